"""Speak synthetic identities with YourTTS: sharded, resumable, seeded.

Each synthetic identity (an id and a 512-d d-vector, e.g. a SLERP of two
real speakers' YourTTS embeddings) reads ``n_utts`` sentences through
``Vits.inference(aux_input={"d_vectors": ..., "language_ids": ...,
"x_lengths": ...})``. The output is laid out like VoxCeleb, so the same
preparation and training code reads it::

    <out_dir>/wav/<identity>/<session>/<utt>.wav     16 kHz mono 16-bit PCM
    <out_dir>/manifests/shard-<i>-of-<N>.csv         one per shard
    <out_dir>/synth.csv                              gather_manifests()
    <out_dir>/meta/synthesis.json                    the options used

Sessions are 11-character YouTube-like ids drawn from the seed and the
identity; utterances are numbered ``00001``... within a session
(:func:`~speechbrain_ssv.inside.synthesis_plan.utterance_plan`). Manifests
have SpeechBrain's columns ``ID,duration,wav,start,stop,spk_id,session``
(plus ``gender`` when the identities carry one), ``ID`` being
``<identity>/<session>/<utt>``, ``start = 0`` and ``stop`` the number of
samples, as :mod:`speechbrain_ssv.data.voxceleb` writes them.

Determinism. VITS sampling is stochastic (the duration predictor's and the
prior's noise). Every utterance gets its own random streams, derived from
(seed, identity, utterance index): while ``Vits.inference`` runs, its normal
draws (``torch.randn``/``randn_like``) are served per batch item from
CPU generators seeded that way, filled in fixed-size time blocks so an
item's noise does not depend on how much the batch is padded. The global
torch RNG is not touched. Hence:

* a file's samples depend only on the seed, the identity, its index, the
  text and the model, never on the sharding, the resume point, the device
  count or the order of identities;
* ``batch_size`` only matters at the very end of an utterance: a batch
  pads shorter items and HiFi-GAN's receptive field reaches into that
  padding, changing their last ~25 ms slightly. Batches are fixed groups of
  one identity's utterances (indices ``[0, b)``, ``[b, 2b)``, ...), so for a
  given ``batch_size`` the output is still independent of the sharding.
  ``batch_size`` is recorded with the options and a resumed run must use
  the same value.

``Vits.inference`` adds no padding or silence of its own (that is
``Synthesizer.tts``'s post-processing, which is not used), so nothing is
trimmed beyond cutting each batch item to its own length.

Sharding: identities are dealt round-robin to ``N`` shards (``shard=(i,
N)``, ``--shard i/N``, or torchrun's ``RANK``/``WORLD_SIZE``). Shards write
disjoint speaker folders and their own manifest, so they can run
concurrently on several machines into one folder. Files are written
atomically and finished ones are skipped, so an interrupted shard resumes.

Text: a user corpus (one sentence per line, numbers spelled out) or the
package's :class:`~speechbrain_ssv.data.text.SentenceGenerator`; the texts,
identities, shards and per-utterance seeds are
:mod:`speechbrain_ssv.inside.synthesis_plan`'s.

Command line (``--gather`` alone merges the shard manifests)::

    python -m speechbrain_ssv.inside.synthesize --model_dir DIR \\
        --identities identities.npz --out OUT --n_utts 20 [--shard 0/2]
        [--texts corpus.txt] [--seed N] [--language en] [--batch_size B]
        [--device cuda]
    python -m speechbrain_ssv.inside.synthesize --out OUT --gather

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import csv
import glob
import hashlib
import logging
import os
import re
import sys
import time

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_ssv.data.voxceleb import CSV_COLUMNS
from speechbrain_ssv.inside.speaker_encoder import resample
from speechbrain_ssv.inside.synthesis_plan import (
    expand_numbers,
    key_seed,
    load_identities,
    normalize_identities,
    read_text_corpus,
    resolve_shard,
    utterance_plan,
)
from speechbrain_ssv.inside.tts import load_yourtts
from speechbrain_ssv.utils.errors import (
    ManifestError,
    SSVInputError,
    report_user_error,
)
from speechbrain_ssv.utils.io import atomic_path, write_wav
from speechbrain_ssv.utils.stages import check_recorded_options

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_COLUMNS",
    "gather_manifests",
    "main",
    "synthesize_identities",
]

# The VoxCeleb preparation's columns; "gender" only when identities have one
MANIFEST_COLUMNS = tuple(c for c in CSV_COLUMNS if c != "gender")
OPTIONS_FILE = os.path.join("meta", "synthesis.json")
# Bump when a change makes the same options produce different audio.
SYNTH_VERSION = 1
# Noise is drawn in blocks of this many time steps per item: a block's
# values never depend on how long the (padded) tensor is.
_NOISE_BLOCK = 64


# ------------------------------------------------------ seeded noise


class _PerItemNoise(torch.overrides.TorchFunctionMode):
    """Serve ``torch.randn``/``randn_like`` calls of a batched
    ``Vits.inference`` from per-item generators.

    Call ``k`` of item ``b`` uses a generator seeded from (item seed, k),
    filling time-major blocks of ``_NOISE_BLOCK`` steps, so an item's noise
    is the same whatever the batch and its padding. Any other random draw
    means coqui changed how it samples: fail loudly rather than silently
    lose the determinism guarantee.
    """

    _OTHER_RANDOM = {
        torch.rand,
        torch.rand_like,
        torch.randint,
        torch.randint_like,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
        torch.Tensor.bernoulli_,
        torch.Tensor.random_,
    }

    def __init__(self, seeds):
        super().__init__()
        self.seeds = list(seeds)
        self.calls = 0

    def _noise(self, shape, dtype, device):
        if len(shape) != 3 or shape[0] != len(self.seeds):
            raise RuntimeError(
                f"Vits.inference drew noise of shape {tuple(shape)}; expected "
                f"[batch={len(self.seeds)}, channels, time]. This coqui-tts "
                "version samples differently; per-utterance seeding cannot "
                "be guaranteed"
            )
        _, channels, steps = shape
        n_blocks = -(-steps // _NOISE_BLOCK)
        items = []
        for seed in self.seeds:
            gen = torch.Generator().manual_seed(
                key_seed(seed, "call", self.calls)
            )
            blocks = torch.randn(
                n_blocks * _NOISE_BLOCK, channels, generator=gen
            )
            items.append(blocks[:steps].T)
        self.calls += 1
        return torch.stack(items).to(device=device, dtype=dtype)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.randn_like:
            ref = args[0]
            return self._noise(
                ref.shape, kwargs.get("dtype") or ref.dtype, ref.device
            )
        if func is torch.randn:
            if kwargs.get("generator") is not None:
                return func(*args, **kwargs)
            shape = (
                args[0]
                if len(args) == 1 and not isinstance(args[0], int)
                else args
            )
            return self._noise(
                tuple(int(s) for s in shape),
                kwargs.get("dtype") or torch.get_default_dtype(),
                kwargs.get("device") or "cpu",
            )
        if func in self._OTHER_RANDOM:
            raise RuntimeError(
                f"Vits.inference called {getattr(func, '__name__', func)}; "
                "per-utterance seeding only covers torch.randn/randn_like"
            )
        return func(*args, **kwargs)


def _synthesize_batch(tts, texts, d_vectors, seeds, language_id, language):
    """Waveforms (numpy, model rate) of one batch, each cut to its length."""
    model = tts.model
    token_ids = []
    for text in texts:
        ids = model.tokenizer.text_to_ids(text, language=language)
        if not ids:
            raise SSVInputError(
                "texts", f"{text!r} has no character the model can speak"
            )
        token_ids.append(ids)
    device = tts.device
    longest = max(len(t) for t in token_ids)
    x = torch.zeros(len(texts), longest, dtype=torch.long)
    for b, ids in enumerate(token_ids):
        x[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    aux = {
        "x_lengths": torch.tensor([len(t) for t in token_ids], device=device),
        "d_vectors": torch.from_numpy(np.stack(d_vectors)).to(device),
    }
    if language_id is not None:
        aux["language_ids"] = torch.full(
            (len(texts),), language_id, dtype=torch.long, device=device
        )
    with _PerItemNoise(seeds):
        out = model.inference(x.to(device), aux_input=aux)
    wav = out["model_outputs"][:, 0].float().cpu()
    frames = out["y_mask"].sum(dim=(1, 2)).long().cpu()
    # Samples per decoder frame (the hop, or more when z is interpolated).
    per_frame = wav.shape[-1] / out["y_mask"].shape[-1]
    return [
        wav[b, : min(wav.shape[-1], int(round(int(frames[b]) * per_frame)))]
        .numpy()
        .copy()
        for b in range(len(texts))
    ]


# --------------------------------------------------------- manifests


def _columns(with_gender):
    return MANIFEST_COLUMNS + (("gender",) if with_gender else ())


def _write_csv(path, columns, rows):
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def _shard_manifest_path(out_dir, shard):
    i, n = shard
    return os.path.join(out_dir, "manifests", f"shard-{i:05d}-of-{n:05d}.csv")


def gather_manifests(out_dir, out_csv=None):
    """Merge the shard manifests of a synthesis folder into one CSV.

    Arguments
    ---------
    out_dir : str
        The folder given to :func:`synthesize_identities`.
    out_csv : str | None
        Destination; ``None``: ``<out_dir>/synth.csv``.

    Returns
    -------
    str
        The merged CSV (rows sorted by ID), written atomically.

    Example
    -------
    >>> out = str(getfixture("tmpdir"))
    >>> _write_csv(_shard_manifest_path(out, (0, 1)), MANIFEST_COLUMNS,
    ...            [("a/s/00001", "1.0", "/x.wav", 0, 16000, "a", "s")])
    >>> open(gather_manifests(out)).read().splitlines()[1]
    'a/s/00001,1.0,/x.wav,0,16000,a,s'
    """
    out_dir = os.fspath(out_dir)
    pattern = os.path.join(out_dir, "manifests", "shard-*-of-*.csv")
    found = {}
    for path in sorted(glob.glob(pattern)):
        m = re.search(r"shard-(\d+)-of-(\d+)\.csv$", path)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            "holds no shard manifest; run synthesize_identities first",
        )
    if len(found) > 1:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            f"mixes shard counts {sorted(found)}; delete the stale manifests",
        )
    ((n, shards),) = found.items()
    missing = [i for i in range(n) if i not in shards]
    if missing:
        raise ManifestError(
            os.path.join(out_dir, "manifests"),
            f"shards {missing} of {n} have not finished; run them first",
        )
    header, rows = None, []
    for i in range(n):
        with open(shards[i], newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            this = next(reader, None)
            if header is None:
                header = this
            elif this != header:
                raise ManifestError(
                    shards[i], f"has columns {this}; expected {header}"
                )
            rows.extend(reader)
    rows.sort(key=lambda r: r[0])
    out_csv = out_csv or os.path.join(out_dir, "synth.csv")
    _write_csv(out_csv, header, rows)
    return out_csv


# ------------------------------------------------------------ options


def _remove_stray_temps(folder):
    """Delete temporary files an interrupted atomic write left behind."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and ".tmp" in name:
                os.remove(os.path.join(dirpath, name))


def _model_scales(model, length_scale, noise_scale, noise_scale_dp):
    old = (
        model.length_scale,
        model.inference_noise_scale,
        model.inference_noise_scale_dp,
    )
    new = tuple(
        o if v is None else float(v)
        for o, v in zip(old, (length_scale, noise_scale, noise_scale_dp))
    )
    return old, new


def _set_scales(model, scales):
    (
        model.length_scale,
        model.inference_noise_scale,
        model.inference_noise_scale_dp,
    ) = scales


# ---------------------------------------------------------- synthesis


def synthesize_identities(
    tts,
    identities,
    out_dir,
    n_utts,
    texts=None,
    seed=1234,
    shard=None,
    language="en",
    batch_size=1,
    n_sessions=1,
    sample_rate=16000,
    length_scale=None,
    noise_scale=None,
    noise_scale_dp=None,
    progress=True,
):
    """Speak ``n_utts`` utterances for each identity of this shard.

    Arguments
    ---------
    tts : speechbrain_ssv.inside.tts.YourTTS
        From :func:`~speechbrain_ssv.inside.tts.load_yourtts`.
    identities : list | dict | str
        Anything
        :func:`~speechbrain_ssv.inside.synthesis_plan.normalize_identities`
        accepts, or a path for
        :func:`~speechbrain_ssv.inside.synthesis_plan.load_identities`. Give
        every shard the same full list: each shard picks its own identities
        from it.
    out_dir : str
        Output folder (see the module docstring for the layout).
    n_utts : int
        Utterances per identity.
    texts : list of str | str | None
        Sentence pool, a corpus file
        (:func:`~speechbrain_ssv.inside.synthesis_plan.read_text_corpus`), or
        ``None`` for the package's sentence generator. Sentences given as a
        list are used verbatim after
        :func:`~speechbrain_ssv.inside.synthesis_plan.expand_numbers`.
    seed : int
        Base seed of texts, sessions and sampling noise.
    shard : tuple | str | None
        ``(i, N)`` or ``"i/N"``; ``None``: torchrun's ``RANK``/``WORLD_SIZE``
        when set, else everything.
    language : str
        Model language (``en``, ``fr-fr``, ``pt-br`` for YourTTS).
    batch_size : int
        Utterances of one identity synthesised together (see the module
        docstring for its small effect on utterance tails).
    n_sessions : int
        Sessions per identity.
    sample_rate : int
        Rate of the written files (resampled when the model's differs).
    length_scale, noise_scale, noise_scale_dp : float | None
        Override the model's speaking-rate factor and the prior / duration
        noise scales (``None``: the checkpoint's values; for YourTTS 1,
        0.667, 1.0). Restored afterwards.
    progress : bool
        Show a tqdm bar over utterances.

    Returns
    -------
    dict
        ``shard``, ``identities`` (in this shard), ``written``,
        ``skipped`` (already there), ``audio_seconds`` and
        ``wall_seconds`` of what was synthesised now, ``realtime_factor``
        (audio seconds per wall second, > 1 is faster than real time;
        ``None`` when nothing was synthesised), ``manifest`` (this shard's
        CSV).

    Example
    -------
    >>> tts = load_yourtts("models/your_tts", device="cuda")  # doctest: +SKIP
    >>> ids = {"syn00001": np.random.randn(512)}  # doctest: +SKIP
    >>> synthesize_identities(tts, ids, "synth", n_utts=2)["written"]  # doctest: +SKIP
    2
    """
    if isinstance(identities, (str, os.PathLike)):
        identities = load_identities(identities)
    identities = normalize_identities(identities, dim=tts.d_vector_dim)
    shard = resolve_shard(shard)
    if isinstance(texts, (str, os.PathLike)):
        texts = read_text_corpus(texts)
    elif texts is not None:
        texts = [expand_numbers(str(t)) for t in texts]
        texts = [t for t in texts if t]
        if not texts:
            raise SSVInputError("texts", "is empty; expected sentences")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SSVInputError("batch_size", f"got {batch_size!r}; expected >= 1")
    # Validate the plan before the options are recorded in the folder.
    utterance_plan(identities[0]["id"], n_utts, seed, texts, n_sessions)
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise SSVInputError("sample_rate", f"got {sample_rate!r}; expected > 0")
    language_id = tts.language_id(language)
    old_scales, scales = _model_scales(
        tts.model, length_scale, noise_scale, noise_scale_dp
    )
    with_gender = any(i["gender"] is not None for i in identities)
    out_dir = os.path.abspath(os.fspath(out_dir))
    text_tag = (
        "generated"
        if texts is None
        else hashlib.sha1("\n".join(texts).encode()).hexdigest()
    )
    check_recorded_options(
        os.path.join(out_dir, OPTIONS_FILE),
        {
            "version": SYNTH_VERSION,
            "seed": int(seed),
            "n_utts": n_utts,
            "n_sessions": n_sessions,
            "language": language,
            "batch_size": batch_size,
            "sample_rate": sample_rate,
            "texts": text_tag,
            "scales": list(scales),
            "model_file_bytes": os.path.getsize(
                os.path.join(tts.model_dir, "model_file.pth")
            ),
        },
        "synthesised speech",
    )
    mine = identities[shard[0] :: shard[1]]
    plans = [
        (ident, utterance_plan(ident["id"], n_utts, seed, texts, n_sessions))
        for ident in mine
    ]
    wav_root = os.path.join(out_dir, "wav")
    rows = []
    counts = {"written": 0, "skipped": 0}
    audio_s, wall_s = 0.0, 0.0
    bar = tqdm(
        total=len(plans) * n_utts,
        desc=f"synthesis {shard[0]}/{shard[1]}",
        disable=not progress,
    )
    _set_scales(tts.model, scales)
    try:
        for ident, plan in plans:
            _remove_stray_temps(os.path.join(wav_root, ident["id"]))
            for first in range(0, n_utts, batch_size):
                group = plan[first : first + batch_size]
                paths = [
                    os.path.join(wav_root, u["rel"] + ".wav") for u in group
                ]
                todo = [not os.path.isfile(p) for p in paths]
                lengths = [None] * len(group)
                if any(todo):
                    start = time.perf_counter()
                    waves = _synthesize_batch(
                        tts,
                        [u["text"] for u in group],
                        [ident["d_vector"]] * len(group),
                        [u["seed"] for u in group],
                        language_id,
                        language,
                    )
                    for j, wave in enumerate(waves):
                        if not todo[j]:
                            continue
                        if tts.sample_rate != sample_rate:
                            wave = resample(wave, tts.sample_rate, sample_rate)
                        write_wav(paths[j], wave, sample_rate)
                        lengths[j] = len(wave)
                        audio_s += len(wave) / sample_rate
                    wall_s += time.perf_counter() - start
                for j, (u, path) in enumerate(zip(group, paths)):
                    if lengths[j] is None:
                        lengths[j] = sf.info(path).frames
                        counts["skipped"] += 1
                    else:
                        counts["written"] += 1
                    row = [
                        u["rel"],
                        repr(lengths[j] / sample_rate),
                        path,
                        0,
                        lengths[j],
                        ident["id"],
                        u["session"],
                    ]
                    if with_gender:
                        row.append(ident["gender"] or "")
                    rows.append(row)
                bar.update(len(group))
    finally:
        bar.close()
        _set_scales(tts.model, old_scales)
    manifest = _shard_manifest_path(out_dir, shard)
    _write_csv(manifest, _columns(with_gender), rows)
    return {
        "shard": shard,
        "identities": len(mine),
        "written": counts["written"],
        "skipped": counts["skipped"],
        "audio_seconds": round(audio_s, 3),
        "wall_seconds": round(wall_s, 3),
        "realtime_factor": round(audio_s / wall_s, 2) if wall_s > 0 else None,
        "manifest": manifest,
    }


# ---------------------------------------------------------------- CLI


def _default_device():
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def main(argv=None):
    """Command-line entry point (see the module docstring).

    Arguments
    ---------
    argv : list of str | None
        Arguments (``sys.argv[1:]`` when ``None``).

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ssv.inside.synthesize",
        description="Speak synthetic identities (d-vectors) with YourTTS "
        "into a VoxCeleb-like folder with a CSV manifest per shard; "
        "sharded, resumable and seeded. --gather alone merges the shard "
        "manifests into synth.csv. Needs the tts extra: "
        "pip install 'speechbrain-ssv[tts]'.",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (wav/, manifests/, synth.csv, meta/)",
    )
    parser.add_argument(
        "--model_dir",
        help="YourTTS release folder or name (required unless --gather)",
    )
    parser.add_argument(
        "--identities",
        help=".npz or .pt file of identity ids and 512-d d-vectors "
        "(required unless --gather)",
    )
    parser.add_argument(
        "--n_utts",
        type=int,
        default=20,
        help="utterances per identity (default: %(default)s)",
    )
    parser.add_argument(
        "--texts",
        default=None,
        help="text corpus, one sentence per line (default: the package's "
        "sentence generator)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1234,
        help="base seed of texts, sessions and sampling noise "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="this process's shard as i/N, e.g. 0/2 (default: torchrun's "
        "RANK/WORLD_SIZE when set, else everything)",
    )
    parser.add_argument(
        "--language",
        default="en",
        help="model language: en, fr-fr or pt-br for YourTTS "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="utterances of one identity synthesised together; a resumed "
        "run must use the same value (default: %(default)s)",
    )
    parser.add_argument(
        "--n_sessions",
        type=int,
        default=1,
        help="sessions per identity (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: cuda:LOCAL_RANK "
        "when CUDA is available, else cpu)",
    )
    parser.add_argument(
        "--gather", action="store_true", help="only merge the shard manifests"
    )
    parser.add_argument(
        "--trust_checkpoint",
        action="store_true",
        help="also load pickled checkpoints (torch.load weights_only=False "
        "runs code stored in the file: only for files you trust)",
    )
    args = parser.parse_args(argv)
    try:
        if args.gather:
            print(f"merged manifest -> {gather_manifests(args.out)}")
            return 0
        if not args.model_dir or not args.identities:
            parser.error("--model_dir and --identities are required")
        tts = load_yourtts(
            args.model_dir,
            device=args.device or _default_device(),
            trust_checkpoint=args.trust_checkpoint,
        )
        summary = synthesize_identities(
            tts,
            args.identities,
            args.out,
            n_utts=args.n_utts,
            texts=args.texts,
            seed=args.seed,
            shard=args.shard,
            language=args.language,
            batch_size=args.batch_size,
            n_sessions=args.n_sessions,
        )
    except (SSVInputError, ImportError) as err:
        # ImportError: the tts extra (coqui-tts) is missing.
        return report_user_error(err)
    i, n = summary["shard"]
    print(
        f"shard {i}/{n}: {summary['identities']} identities, "
        f"{summary['written']} written, {summary['skipped']} already there, "
        f"{summary['audio_seconds']} s of audio at "
        f"{summary['realtime_factor']}x real time -> {summary['manifest']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
