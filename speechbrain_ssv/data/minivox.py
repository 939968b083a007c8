"""minivox: the embedded, generated speaker-verification corpus.

No dataset can be downloaded, so the package synthesises one shaped exactly
like VoxCeleb1 (or, with ``variant="ffsvc"``, like FFSVC) so that the same
preparation and evaluation code reads the real and the generated corpus.

Speakers are seeded espeak-ng voices (:mod:`speechbrain_ssv.data.voices`)
reading generated English text (:mod:`speechbrain_ssv.data.text`); every
session of a speaker goes through its own simulated channel (room, device
response, noise, level, small voice drift; :mod:`speechbrain_ssv.data.channels`).

Layout written under ``root``::

    wav/<spk_id>/<session_id>/<utt>.wav   16 kHz mono 16-bit PCM, >= 3.2 s
        spk_id      id00001, id00002, ...
        session_id  11 characters of [A-Za-z0-9_-] (YouTube-like)
        utt         00001, 00002, ... per session (voxceleb variant)
                    00001_<DEV>_<cm>, e.g. 00001_MIC_300 (ffsvc variant: one
                    file per simulated device; DEV in CLS close-talk, IPH
                    iPhone, AND Android (8 kHz mu-law codec), IPD iPad, MIC
                    far-field array; cm = distance in centimetres, 000-500)
    meta/vox1_meta.csv    tab-separated, header
                          "VoxCeleb1 ID\\tVGGFace1 ID\\tGender\\tNationality\\tSet",
                          Gender m/f, Set dev (training) or test (held out)
    meta/veri_test2.txt   "<1|0> <spk/session/utt.wav> <spk/session/utt.wav>",
                          held-out (Set=test) speakers only, as many targets
                          as non-targets, target pairs from different sessions
                          where the speaker has them; in the ffsvc variant
                          every trial enrols a CLS file and tests a non-CLS one
    meta/ffsvc_meta.csv   (ffsvc variant) utt,spk,session,device,distance,gender,split
    meta/minivox.json     version, options and seed of the corpus
    noise/*.wav, noise.csv  coloured noise, hum, babble of non-corpus voices
    rir/*.wav, rir.csv      pyroomacoustics rooms; both CSVs have SpeechBrain's
                            ``ID,duration,wav,wav_format,wav_opts`` columns with
                            absolute paths, as read by
                            ``speechbrain.augment.time_domain.AddNoise`` /
                            ``AddReverb(csv_file=...)``

Every random draw comes from a generator seeded with (seed, purpose, speaker,
session, utterance), so output is byte-identical for the same seed and
options whatever the number of workers. Files are written atomically and
existing ones are skipped, so an interrupted run resumes where it stopped.

Command line::

    python -m speechbrain_ssv.data.minivox --out DIR [--size tiny|default]
        [--variant voxceleb|ffsvc] [--channel none|mild|strong] [--seed N]
        [--workers N]

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import importlib
import multiprocessing as mp
import os
import string
import sys
import time
import zlib

import numpy as np
from tqdm import tqdm

from speechbrain_ssv.data.channels import (
    DEVICES,
    STRENGTHS,
    apply_codec,
    apply_response,
    coloured_noise,
    draw_session_channel,
    hum_noise,
    loop_segment,
    mix_at_snr,
    reverberate,
    room_rir,
    set_level,
)
from speechbrain_ssv.data.text import SentenceGenerator
from speechbrain_ssv.data.voices import draw_voice, get_engine
from speechbrain_ssv.utils.errors import (
    MissingExtraError,
    SSVInputError,
    report_user_error,
)
from speechbrain_ssv.utils.io import write_text, write_wav
from speechbrain_ssv.utils.stages import check_recorded_options

VERSION = 1
FS = 16000
MIN_SECONDS = 3.3

SIZES = {
    "tiny": {
        "n_speakers": 16,
        "n_test_speakers": 6,
        "n_utts": 6,
        "sessions": (2, 3),
        "n_noise": 6,
        "n_rir": 6,
        "trials_per_utt": 3,
    },
    "default": {
        "n_speakers": 200,
        "n_test_speakers": 40,
        "n_utts": 20,
        "sessions": (3, 6),
        "n_noise": 30,
        "n_rir": 40,
        "trials_per_utt": 4,
    },
}
VARIANTS = ("voxceleb", "ffsvc")
#: What the generator needs beyond the base install (module: distribution),
#: all provided by ``pip install 'speechbrain-ssv[minivox]'``.
EXTRA_MODULES = {
    "pyroomacoustics": "pyroomacoustics",
    "espeakng_loader": "espeakng-loader",
}
_SESSION_CHARS = string.ascii_letters + string.digits + "-_"
_OPTION_KEYS = (
    "n_speakers",
    "n_test_speakers",
    "n_utts",
    "sessions",
    "n_noise",
    "n_rir",
    "trials_per_utt",
)


def seeded_rng(seed, *keys):
    """A numpy generator determined by a seed and a tuple of keys.

    Arguments
    ---------
    seed : int
        Corpus seed.
    *keys : int | str
        Purpose and indices (strings are hashed with CRC32, stable across
        runs and Python versions, unlike ``hash``).

    Returns
    -------
    numpy.random.Generator
        Independent stream for these keys.

    Example
    -------
    >>> a = seeded_rng(1, "utt", 3).random()
    >>> a == seeded_rng(1, "utt", 3).random(), a == seeded_rng(1, "utt", 4).random()
    (True, False)
    """
    entropy = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            entropy.append(zlib.crc32(key.encode()))
        else:
            entropy.append(int(key) & 0xFFFFFFFF)
    return np.random.default_rng(entropy)


def resolve_options(
    size="default", variant="voxceleb", channel="strong", seed=1234, **overrides
):
    """Validate generator options and fill them in from a size preset.

    Arguments
    ---------
    size : str
        ``tiny`` or ``default``.
    variant : str
        ``voxceleb`` or ``ffsvc``.
    channel : str
        ``none``, ``mild`` or ``strong``.
    seed : int
        Corpus seed.
    **overrides
        Any of ``n_speakers``, ``n_test_speakers``, ``n_utts``,
        ``sessions`` (min, max), ``n_noise``, ``n_rir``, ``trials_per_utt``.

    Returns
    -------
    dict
        Complete options (what ``meta/minivox.json`` records).

    Example
    -------
    >>> opts = resolve_options("tiny", n_speakers=10, n_test_speakers=4)
    >>> opts["n_speakers"], opts["n_utts"], opts["channel"]
    (10, 6, 'strong')
    >>> resolve_options("huge")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.SSVInputError: size: got 'huge'; expected one of ['default', 'tiny']
    """
    if size not in SIZES:
        raise SSVInputError(
            "size", f"got {size!r}; expected one of {sorted(SIZES)}"
        )
    if variant not in VARIANTS:
        raise SSVInputError(
            "variant", f"got {variant!r}; expected one of {list(VARIANTS)}"
        )
    if channel not in STRENGTHS:
        raise SSVInputError(
            "channel", f"got {channel!r}; expected one of {sorted(STRENGTHS)}"
        )
    unknown = sorted(set(overrides) - set(_OPTION_KEYS))
    if unknown:
        raise SSVInputError(
            unknown[0],
            f"is not a minivox option; expected one of {list(_OPTION_KEYS)}",
        )
    opts = dict(SIZES[size])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    opts["sessions"] = [int(s) for s in opts["sessions"]]
    for key in (
        "n_speakers",
        "n_test_speakers",
        "n_utts",
        "n_noise",
        "n_rir",
        "trials_per_utt",
    ):
        if not isinstance(opts[key], (int, np.integer)) or isinstance(
            opts[key], bool
        ):
            raise SSVInputError(key, f"got {opts[key]!r}; expected an integer")
        opts[key] = int(opts[key])
    lo, hi = opts["sessions"] if len(opts["sessions"]) == 2 else (0, -1)
    if not 1 <= lo <= hi:
        raise SSVInputError(
            "sessions",
            f"got {opts['sessions']}; expected [min, max] with 1 <= min <= max",
        )
    if (
        opts["n_test_speakers"] < 2
        or opts["n_speakers"] - opts["n_test_speakers"] < 1
    ):
        raise SSVInputError(
            "n_test_speakers",
            f"got {opts['n_test_speakers']} of {opts['n_speakers']} speakers; expected at "
            "least 2 held-out speakers and at least 1 training speaker",
        )
    if (
        opts["n_utts"] < 2
        or opts["n_noise"] < 1
        or opts["n_rir"] < 1
        or opts["trials_per_utt"] < 1
    ):
        raise SSVInputError(
            "n_utts/n_noise/n_rir/trials_per_utt",
            "expected n_utts >= 2 and the others >= 1",
        )
    opts.update(
        size=size,
        variant=variant,
        channel=channel,
        seed=int(seed),
        version=VERSION,
    )
    return opts


def session_id(rng):
    """An 11-character YouTube-like id.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness.

    Returns
    -------
    str
        The id.

    Example
    -------
    >>> len(session_id(np.random.default_rng(0)))
    11
    """
    return "".join(
        _SESSION_CHARS[i] for i in rng.integers(len(_SESSION_CHARS), size=11)
    )


def device_suffix(device, distance):
    """File-name suffix of an FFSVC-variant render.

    Arguments
    ---------
    device : str
        Device id.
    distance : float
        Distance in metres.

    Returns
    -------
    str
        ``<DEV>_<cm>``.

    Example
    -------
    >>> device_suffix("MIC", 1.5)
    'MIC_150'
    """
    return f"{device}_{int(round(distance * 100)):03d}"


def plan_corpus(opts):
    """Speakers, their voices, sessions and file names (no audio).

    Arguments
    ---------
    opts : dict
        From :func:`resolve_options`.

    Returns
    -------
    list of dict
        Per speaker: ``id``, ``index``, ``split`` (dev/test), ``voice``,
        ``sessions`` (list of ``(session_id, [utt stems])``).

    Example
    -------
    >>> plan = plan_corpus(resolve_options("tiny"))
    >>> len(plan), sum(s["split"] == "test" for s in plan)
    (16, 6)
    """
    seed = opts["seed"]
    n_test = opts["n_test_speakers"]
    lo, hi = opts["sessions"]
    plan = []
    for index in range(opts["n_speakers"]):
        voice = draw_voice(seeded_rng(seed, "voice", index))
        rng = seeded_rng(seed, "sessions", index)
        n_sess = int(rng.integers(lo, hi + 1))
        n_sess = min(n_sess, opts["n_utts"])
        # Every session gets at least one utterance, the rest spread at random.
        counts = np.ones(n_sess, dtype=int)
        extra = rng.integers(n_sess, size=opts["n_utts"] - n_sess)
        counts += np.bincount(extra, minlength=n_sess)
        sessions = []
        used = set()
        for count in counts:
            sid = session_id(rng)
            while sid in used:
                sid = session_id(rng)
            used.add(sid)
            sessions.append((sid, [f"{k + 1:05d}" for k in range(int(count))]))
        plan.append(
            {
                "id": f"id{index + 1:05d}",
                "index": index,
                "split": "test"
                if index >= opts["n_speakers"] - n_test
                else "dev",
                "voice": voice,
                "sessions": sessions,
            }
        )
    return plan


def utterance_files(spk, opts):
    """Relative wav paths (under ``wav/``) of one speaker, grouped per session.

    Arguments
    ---------
    spk : dict
        One entry of :func:`plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    list of (str, str, str, float)
        ``(relative path, session, device, distance)``; device is ``""`` in
        the voxceleb variant.

    Example
    -------
    >>> opts = resolve_options("tiny")
    >>> utterance_files(plan_corpus(opts)[0], opts)[0][0]
    'id00001/.../00001.wav'
    """
    out = []
    for sid, utts in spk["sessions"]:
        for utt in utts:
            if opts["variant"] == "ffsvc":
                for dev, dist, _ in DEVICES:
                    name = f"{utt}_{device_suffix(dev, dist)}.wav"
                    out.append((f"{spk['id']}/{sid}/{name}", sid, dev, dist))
            else:
                out.append((f"{spk['id']}/{sid}/{utt}.wav", sid, "", 0.0))
    return out


def _remove_stray_temps(folder, recursive):
    """Delete temporary files an interrupted atomic write left behind."""
    if not os.path.isdir(folder):
        return
    walker = (
        os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    )
    for dirpath, _, files in walker:
        for name in files:
            if name.startswith(".") and ".tmp" in name:
                os.remove(os.path.join(dirpath, name))


def _speak(engine, voice, sgen, rng, rate_scale=1.0, pitch_scale=1.0):
    """Render sentences until the audio is at least MIN_SECONDS long."""
    text = sgen.sentence(rng)
    seed = int(rng.integers(2**31 - 1))
    for _ in range(4):
        wav = engine.synth(voice, text, rate_scale, pitch_scale, seed)
        if len(wav) >= MIN_SECONDS * FS:
            break
        text = text + " " + sgen.sentence(rng)
    return wav.astype(np.float64), text


_BABBLE_POOL = {}
_BABBLE_POOL_SIZE = 6


def _babble_pool_track(engine, seed, j):
    """Babble of 3-5 voices that are not corpus speakers (cached per process).

    Rendering babble per session would cost more than the speech itself, so
    sessions draw from a small pool that depends on the seed only; every
    process computes the same pool, so output does not depend on workers.
    """
    key = (os.getpid(), seed, j)
    if key not in _BABBLE_POOL:
        rng = seeded_rng(seed, "babble", j)
        sgen = SentenceGenerator(seed + 1)
        n = 8 * FS
        track = np.zeros(n)
        for _ in range(int(rng.integers(3, 6))):
            voice = draw_voice(rng)
            parts, total = [], 0
            while total < n:
                wav, _ = _speak(engine, voice, sgen, rng)
                parts.append(wav)
                total += len(wav)
            talker = np.concatenate(parts)[:n]
            track += talker / (np.sqrt(np.mean(talker**2)) + 1e-12)
        _BABBLE_POOL[key] = track / (np.sqrt(np.mean(track**2)) + 1e-12)
    return _BABBLE_POOL[key]


def _babble(engine, seed, rng, n):
    """Two pool tracks at random offsets and weights: varied, cheap babble."""
    out = np.zeros(n)
    for j in rng.choice(_BABBLE_POOL_SIZE, size=2, replace=False):
        track = _babble_pool_track(engine, seed, int(j))
        out += rng.uniform(0.5, 1.0) * loop_segment(rng, track, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _noise_track(engine, seed, keys, kind, alpha, seconds):
    rng = seeded_rng(seed, "noise", *keys)
    n = int(seconds * FS)
    if kind == "coloured":
        return coloured_noise(rng, n, alpha)
    if kind == "hum":
        return hum_noise(rng, n)
    return _babble(engine, seed, rng, n)


def _voxceleb_session(engine, opts, spk, sidx, sid, utts, root, counts):
    seed, index = opts["seed"], spk["index"]
    chan = draw_session_channel(
        seeded_rng(seed, "channel", index, sidx), opts["channel"]
    )
    sgen = SentenceGenerator(seed)
    rir = noise = None
    for uidx, utt in enumerate(utts):
        path = os.path.join(root, "wav", spk["id"], sid, f"{utt}.wav")
        if os.path.exists(path):
            counts["skipped"] += 1
            continue
        rng = seeded_rng(seed, "utt", index, sidx, uidx)
        if chan is None:
            wav, _ = _speak(engine, spk["voice"], sgen, rng)
            write_wav(path, set_level(wav, -23.0), FS)
            counts["written"] += 1
            continue
        if rir is None:
            crng = seeded_rng(seed, "room", index, sidx)
            rir = room_rir(
                crng, chan["absorption"], chan["distance"], chan["max_order"]
            )
            noise = _noise_track(
                engine, seed, (index, sidx), chan["noise"], chan["alpha"], 8.0
            )
        wav, _ = _speak(
            engine,
            spk["voice"],
            sgen,
            rng,
            chan["rate_scale"],
            chan["pitch_scale"],
        )
        y = reverberate(wav, rir)
        y = apply_response(y, chan["hp"], chan["lp"], chan["peaks"])
        y = mix_at_snr(y, loop_segment(rng, noise, len(y)), chan["snr"])
        write_wav(path, set_level(y, chan["level_db"]), FS)
        counts["written"] += 1


def _ffsvc_session(engine, opts, spk, sidx, sid, utts, root, counts):
    seed, index = opts["seed"], spk["index"]
    strength = opts["channel"]
    chan = draw_session_channel(
        seeded_rng(seed, "channel", index, sidx),
        "mild" if strength == "none" else strength,
    )
    sgen = SentenceGenerator(seed)
    rirs = noise = None
    for uidx, utt in enumerate(utts):
        paths = [
            os.path.join(
                root, "wav", spk["id"], sid, f"{utt}_{device_suffix(d, r)}.wav"
            )
            for d, r, _ in DEVICES
        ]
        missing = [not os.path.exists(p) for p in paths]
        counts["skipped"] += len(paths) - sum(missing)
        if not any(missing):
            continue
        if rirs is None:
            crng = seeded_rng(seed, "room", index, sidx)
            # One room per session shared by all devices (as in a recording
            # venue); each device sits at its own distance.
            dims = [
                crng.uniform(6.5, 11.0),
                crng.uniform(4.0, 8.0),
                crng.uniform(2.6, 4.0),
            ]
            rirs = [
                np.ones(1)
                if dist == 0.0
                else room_rir(
                    crng, chan["absorption"], dist, chan["max_order"], dims
                )
                for _, dist, _ in DEVICES
            ]
            if strength != "none":
                noise = _noise_track(
                    engine,
                    seed,
                    (index, sidx),
                    chan["noise"],
                    chan["alpha"],
                    8.0,
                )
        rng = seeded_rng(seed, "utt", index, sidx, uidx)
        dry, _ = _speak(
            engine,
            spk["voice"],
            sgen,
            rng,
            chan["rate_scale"],
            chan["pitch_scale"],
        )
        level = chan["level_db"]
        for k, (_, dist, resp) in enumerate(DEVICES):
            drng = seeded_rng(seed, "device", index, sidx, uidx, k)
            if not missing[k]:
                continue
            y = reverberate(dry, rirs[k])
            if noise is not None:
                # Ambient noise is the same in the room; farther devices
                # pick up relatively more of it.
                snr = chan["snr"] + 6.0 - 8.0 * np.log10(1 + 4 * dist)
                y = mix_at_snr(y, loop_segment(drng, noise, len(y)), snr)
            y = apply_response(y, resp["hp"], resp["lp"], resp["peaks"])
            y = mix_at_snr(y, drng.standard_normal(len(y)), 45.0 - 4.0 * dist)
            y = apply_codec(y, resp["rate"], resp["mulaw"])
            write_wav(paths[k], set_level(y, level - 2.0 * dist), FS)
            counts["written"] += 1


def _speaker_job(args):
    """Render every missing file of one speaker (runs in a worker)."""
    opts, spk, root = args
    engine = get_engine()
    # Renders can depend on what the process synthesised before (espeak-ng
    # keeps hidden state). Build the babble pool first, always in the same
    # order, then give every speaker the same starting state, so that what a
    # speaker sounds like does not depend on which worker got it after whom.
    for j in range(_BABBLE_POOL_SIZE):
        _babble_pool_track(engine, opts["seed"], j)
    engine.reset()
    _remove_stray_temps(os.path.join(root, "wav", spk["id"]), recursive=True)
    counts = {"written": 0, "skipped": 0}
    render = _ffsvc_session if opts["variant"] == "ffsvc" else _voxceleb_session
    for sidx, (sid, utts) in enumerate(spk["sessions"]):
        render(engine, opts, spk, sidx, sid, utts, root, counts)
    return counts


def _csv_rows(paths):
    """SpeechBrain's noise/RIR CSV (the format ``prepare_csv`` writes)."""
    lines = ["ID,duration,wav,wav_format,wav_opts"]
    for i, (path, n) in enumerate(paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        lines.append(f"{stem}_{i},{n / FS},{path},wav,")
    return "\n".join(lines) + "\n"


def write_noise_set(root, opts):
    """Write ``noise/*.wav`` and ``noise.csv`` (skipping existing files).

    Arguments
    ---------
    root : str
        Corpus root.
    opts : dict
        Options.

    Returns
    -------
    int
        Files written.
    """
    folder = os.path.join(root, "noise")
    _remove_stray_temps(folder, recursive=False)
    rows, written = [], 0
    n = 6 * FS
    for i in range(opts["n_noise"]):
        kind = ("coloured", "hum", "babble")[i % 3]
        path = os.path.abspath(os.path.join(folder, f"{kind}_{i + 1:03d}.wav"))
        if not os.path.exists(path):
            rng = seeded_rng(opts["seed"], "noiseset", i)
            engine = get_engine()
            for j in range(_BABBLE_POOL_SIZE):
                _babble_pool_track(engine, opts["seed"], j)
            engine.reset()
            track = _noise_track(
                engine,
                opts["seed"],
                ("set", i),
                kind,
                float(rng.uniform(0, 2)),
                6.0,
            )
            write_wav(path, set_level(track, float(rng.uniform(-30, -18))), FS)
            written += 1
        rows.append((path, n))
    write_text(os.path.join(root, "noise.csv"), _csv_rows(rows))
    return written


def write_rir_set(root, opts):
    """Write ``rir/*.wav`` and ``rir.csv`` (skipping existing files).

    Arguments
    ---------
    root : str
        Corpus root.
    opts : dict
        Options.

    Returns
    -------
    int
        Files written.
    """
    folder = os.path.join(root, "rir")
    _remove_stray_temps(folder, recursive=False)
    rows, written = [], 0
    for i in range(opts["n_rir"]):
        path = os.path.abspath(os.path.join(folder, f"room_{i + 1:03d}.wav"))
        rng = seeded_rng(opts["seed"], "rirset", i)
        h = room_rir(rng, rng.uniform(0.08, 0.7), rng.uniform(0.5, 4.0), 10)
        h = 0.9 * h[: int(0.8 * FS)]
        if not os.path.exists(path):
            write_wav(path, h, FS)
            written += 1
        rows.append((path, len(h)))
    write_text(os.path.join(root, "rir.csv"), _csv_rows(rows))
    return written


def _pick_trials(rng, enrol_items, test_pool, n_per):
    """Balanced target / non-target trials.

    ``enrol_items`` and ``test_pool`` are lists of (spk, session, path).
    Targets prefer test files from another session of the same speaker.
    """
    by_spk = {}
    for item in test_pool:
        by_spk.setdefault(item[0], []).append(item)
    trials = []
    for spk, sess, path in enrol_items:
        own = [t for t in by_spk[spk] if t[2] != path]
        other_sess = [t for t in own if t[1] != sess]
        cands = other_sess if len(other_sess) >= n_per else own
        k = min(n_per, len(cands))
        if k == 0:
            continue
        for j in rng.choice(len(cands), size=k, replace=False):
            trials.append((1, path, cands[j][2]))
        others = [t for t in test_pool if t[0] != spk]
        for j in rng.choice(len(others), size=k, replace=False):
            trials.append((0, path, others[j][2]))
    return trials


def make_trials(plan, opts):
    """The ``veri_test2.txt`` trials over held-out speakers.

    Arguments
    ---------
    plan : list of dict
        From :func:`plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    list of (int, str, str)
        ``(label, enrol path, test path)``, paths relative to ``wav/``.

    Example
    -------
    >>> opts = resolve_options("tiny")
    >>> trials = make_trials(plan_corpus(opts), opts)
    >>> sum(t[0] for t in trials) * 2 == len(trials)
    True
    """
    items = []
    for spk in plan:
        if spk["split"] != "test":
            continue
        for rel, sid, dev, _ in utterance_files(spk, opts):
            items.append((spk["id"], sid, rel, dev))
    rng = seeded_rng(opts["seed"], "trials")
    if opts["variant"] == "ffsvc":
        enrol = [i[:3] for i in items if i[3] == "CLS"]
        pool = [i[:3] for i in items if i[3] != "CLS"]
    else:
        enrol = pool = [i[:3] for i in items]
    return _pick_trials(rng, enrol, pool, opts["trials_per_utt"])


def write_meta(root, plan, opts):
    """Write the VoxCeleb1 meta CSV, the trial list and the FFSVC meta CSV.

    Arguments
    ---------
    root : str
        Corpus root.
    plan : list of dict
        From :func:`plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    int
        Number of trials.
    """
    meta = os.path.join(root, "meta")
    _remove_stray_temps(meta, recursive=False)
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for spk in plan:
        v = spk["voice"]
        lines.append(
            f"{spk['id']}\tMinivox_Speaker_{spk['index'] + 1:05d}\t{v['gender']}\t{v['nationality']}\t{spk['split']}"
        )
    write_text(os.path.join(meta, "vox1_meta.csv"), "\n".join(lines) + "\n")
    trials = make_trials(plan, opts)
    write_text(
        os.path.join(meta, "veri_test2.txt"),
        "".join(f"{lab} {e} {t}\n" for lab, e, t in trials),
    )
    if opts["variant"] == "ffsvc":
        rows = ["utt,spk,session,device,distance,gender,split"]
        for spk in plan:
            for rel, sid, dev, dist in utterance_files(spk, opts):
                rows.append(
                    f"wav/{rel},{spk['id']},{sid},{dev},{dist},{spk['voice']['gender']},{spk['split']}"
                )
        write_text(os.path.join(meta, "ffsvc_meta.csv"), "\n".join(rows) + "\n")
    return len(trials)


def check_minivox_extra():
    """Raise one error naming every missing dependency of the generator.

    Only the generator needs them, so they are an extra of the package and
    are imported where used; checking them all up front turns what would
    be an ``ImportError`` deep in a worker into one line saying what to
    install.

    Raises
    ------
    MissingExtraError
        When a module of :data:`EXTRA_MODULES` cannot be imported.

    Example
    -------
    >>> check_minivox_extra()  # both installed: nothing to say
    """
    missing = []
    for module, dist in EXTRA_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise MissingExtraError(
            "minivox", missing, "the minivox corpus generator"
        )


def generate_minivox(
    root,
    size="default",
    variant="voxceleb",
    channel="strong",
    seed=1234,
    workers=2,
    progress=True,
    **overrides,
):
    """Generate (or finish generating) a minivox corpus.

    Arguments
    ---------
    root : str
        Output folder (created).
    size : str
        ``tiny`` (tests: 16 speakers, 6 held out, 6 utterances) or
        ``default`` (200 speakers, 40 held out, 20 utterances).
    variant : str
        ``voxceleb`` or ``ffsvc`` (every utterance rendered per device).
    channel : str
        Per-session channel strength: ``none``, ``mild`` or ``strong``.
    seed : int
        Corpus seed; same seed and options give byte-identical files.
    workers : int
        Worker processes (speakers are spread over them); 1 runs in-process.
        Does not change the output.
    progress : bool
        Show a tqdm bar.
    **overrides
        ``n_speakers``, ``n_test_speakers``, ``n_utts``, ``sessions``,
        ``n_noise``, ``n_rir``, ``trials_per_utt``.

    Returns
    -------
    dict
        ``root``, ``options``, ``n_speakers``, ``n_test_speakers``,
        ``n_files``, ``written``, ``skipped``, ``n_trials``, ``seconds``.

    Raises
    ------
    SSVInputError
        On a bad option, or a folder holding a corpus made with other
        options.
    MissingExtraError
        When the ``minivox`` extra (pyroomacoustics, espeakng-loader) is not
        installed.
    """
    opts = resolve_options(size, variant, channel, seed, **overrides)
    if not isinstance(workers, int) or workers < 1:
        raise SSVInputError(
            "workers", f"got {workers!r}; expected an integer >= 1"
        )
    check_minivox_extra()
    start = time.time()
    root = os.path.abspath(os.fspath(root))
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    check_recorded_options(
        os.path.join(root, "meta", "minivox.json"), opts, "a minivox corpus"
    )
    plan = plan_corpus(opts)
    jobs = [(opts, spk, root) for spk in plan]
    counts = {"written": 0, "skipped": 0}
    bar = tqdm(total=len(jobs), desc="minivox speakers", disable=not progress)
    if workers == 1:
        results = map(_speaker_job, jobs)
        pool = None
    else:
        # Spawned (not forked) workers: a forked child inherits the parent's
        # espeak-ng state, and re-initialising over it made renders depend on
        # what the parent had synthesised before.
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_speaker_job, jobs)
    try:
        for res in results:
            counts["written"] += res["written"]
            counts["skipped"] += res["skipped"]
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    counts["written"] += write_noise_set(root, opts)
    counts["written"] += write_rir_set(root, opts)
    n_trials = write_meta(root, plan, opts)
    n_files = sum(len(utterance_files(s, opts)) for s in plan)
    return {
        "root": root,
        "options": opts,
        "n_speakers": len(plan),
        "n_test_speakers": opts["n_test_speakers"],
        "n_files": n_files,
        "written": counts["written"],
        "skipped": counts["skipped"],
        "n_trials": n_trials,
        "seconds": round(time.time() - start, 2),
    }


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
        prog="python -m speechbrain_ssv.data.minivox",
        description="Generate the embedded minivox speaker-verification "
        "corpus, laid out like VoxCeleb1 (or FFSVC), with its trial list, "
        "noise and room-impulse-response sets. Rerunning with the same "
        "options finishes an interrupted run; the output is byte-identical "
        "for the same seed and options. Needs the minivox extra: "
        "pip install 'speechbrain-ssv[minivox]'.",
        epilog="Bad input ends with one 'error: ...' line and exit status "
        "2; set SSV_DEBUG=1 to see the traceback as well.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created; an existing corpus made with the same "
        "options is completed, one made with other options is refused)",
    )
    parser.add_argument(
        "--size",
        default="default",
        choices=sorted(SIZES),
        help="preset: tiny is 16 speakers (6 held out) x 6 utterances, for "
        "tests; default is 200 speakers (40 held out) x 20 utterances "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--variant",
        default="voxceleb",
        choices=list(VARIANTS),
        help="voxceleb: one file per utterance; ffsvc: every utterance "
        "rendered through each simulated device and distance "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--channel",
        default="strong",
        choices=sorted(STRENGTHS),
        help="per-session channel strength (room, device response, noise, "
        "level); none keeps the clean voice (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1234,
        help="corpus random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes; 1 runs in-process; the output does not "
        "depend on it (default: %(default)s)",
    )
    parser.add_argument(
        "--n_speakers",
        type=int,
        default=None,
        help="number of speakers (default: from --size)",
    )
    parser.add_argument(
        "--n_utts",
        type=int,
        default=None,
        help="utterances per speaker, at least 2 (default: from --size)",
    )
    parser.add_argument(
        "--n_test_speakers",
        type=int,
        default=None,
        help="held-out speakers for the trial list, at least 2 and fewer "
        "than --n_speakers (default: from --size)",
    )
    args = parser.parse_args(argv)
    try:
        summary = generate_minivox(
            args.out,
            size=args.size,
            variant=args.variant,
            channel=args.channel,
            seed=args.seed,
            workers=args.workers,
            n_speakers=args.n_speakers,
            n_utts=args.n_utts,
            n_test_speakers=args.n_test_speakers,
        )
    except SSVInputError as err:
        return report_user_error(err)
    print(
        f"minivox: {summary['n_files']} files ({summary['written']} written, "
        f"{summary['skipped']} already there), {summary['n_speakers']} speakers "
        f"({summary['n_test_speakers']} held out), {summary['n_trials']} trials "
        f"in {summary['seconds']} s -> {summary['root']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
