#!/usr/bin/env python3
"""Training-step throughput of a recipe's *real* data path: manifest ->
DataLoader (the yaml's ``dataloader_options``) -> waveform augmentation ->
``fit_batch``, on a generated minivox corpus, with the bare step (the same
``fit_batch`` on one batch already in memory, augmentation off) measured in
the same run as the named baseline.

Definitions (all measured in the training process):

* a *step* is one ``fit_batch`` after the first batch (the first batch,
  worker start-up and validation are excluded); the loader is iterated
  across epoch ends (its workers persist), so a tiny corpus still gives
  ``--steps`` steps;
* ``data_wait_fraction``: time blocked in the loader's ``__next__`` / the
  summed step wall time;
* ``augment_fraction``: time in the Brain's ``wav_augment`` (run in the
  training process; loader-side work counts as data) / the summed step time;
* ``processes_after_first_batch``: processes whose parent is the training
  process created after the first batch (forks counted by an
  ``os.register_at_fork`` hook, spawned ones by listing the children);
* ``utt_per_s``: utterances (not views) per second of step time;
* ``ratio_to_bare``: step time per utterance / the bare step's.

Usage::

    python bench/bench_recipe_step.py --recipe supervised --size tiny \\
        --steps 20 --num_workers 2 --out bench/results/recipe_supervised.json

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import psutil
import speechbrain as sb
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from speechbrain_ssv.utils.io import write_json  # noqa: E402

#: --recipe name -> (recipe folder, minivox yaml, dataset builder name).
RECIPES = {
    "supervised": ("VoxCeleb/Supervised", "ecapa_minivox.yaml", "supervised"),
    "sdpn": ("VoxCeleb/SDPN", "sdpn_minivox.yaml", "multicrop"),
    "dino": ("VoxCeleb/SDPN", "dino_minivox.yaml", "multicrop"),
    "i_ap": ("VoxCeleb/MixAP", "i_ap_minivox.yaml", "two_views"),
    # The pseudo-label recipe's training stage: the supervised data path on
    # cluster labels; the corpus's speaker labels stand in for them (same
    # columns, same loader and augmentation).
    "pseudolabel": (
        "VoxCeleb/PseudoLabel",
        "pseudolabel_minivox.yaml",
        "pseudolabel",
    ),
    "club": ("FFSVC/CLUB", "club_minivox.yaml", "club"),
}


def corpus(size, variant="voxceleb", folder=None):
    """Path of a minivox corpus of ``size``, generated once (cached)."""
    from speechbrain_ssv.minivox import generate_minivox

    folder = folder or os.path.join(
        tempfile.gettempdir(), f"ssv_bench_minivox_{variant}_{size}"
    )
    if not os.path.isfile(os.path.join(folder, "meta", "minivox.json")):
        generate_minivox(
            folder,
            size=size,
            variant=variant,
            workers=os.cpu_count() or 1,
        )
    return folder


def _club_data(hp, hparams_file, num_workers):
    """The CLUB recipe's own data preparation, datasets and pair sampler
    (imported from its train.py, whose work is all inside main())."""
    import importlib.util

    from speechbrain_ssv.data.samplers import SpeakerPairSampler

    path = os.path.join(REPO, "recipes", "FFSVC", "CLUB", "train.py")
    spec = importlib.util.spec_from_file_location("club_train", path)
    club = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(club)
    club.prepare_ffsvc_data(hp)
    club.check_speaker_encoder(hp, hparams_file)
    data = club.dataio_prep(hp, hparams_file)[0]
    sampler = SpeakerPairSampler.from_dataset(
        data,
        hp["batch_speakers"],
        seed=hp["seed"],
        max_pairs_per_speaker=hp["max_pairs_per_speaker"],
    )
    loader_kwargs = {"batch_sampler": sampler, "num_workers": num_workers}
    for key in ("persistent_workers", "prefetch_factor", "pin_memory"):
        if key in hp["valid_dataloader_options"]:
            loader_kwargs[key] = hp["valid_dataloader_options"][key]
    return data, loader_kwargs


def build(recipe, data_folder, out, num_workers, batch_size, run_opts):
    """The recipe's hparams, Brain, training dataset and loader options, as
    its train.py builds them (data preparation and augmentation banks
    included)."""
    from speechbrain_ssv.recipe_utils import (
        load_augmentation_banks,
        prepare_voxceleb_data,
    )
    from speechbrain_ssv.utils.hparams import load_hparams

    folder, yaml_name, kind = RECIPES[recipe]
    path = os.path.join(REPO, "recipes", folder, "hparams")
    overrides = {
        "data_folder": data_folder,
        "output_folder": out,
        "num_workers": num_workers,
        "verify_every": 0,
    }
    if batch_size:
        # CLUB's batches are speaker pairs: batch_speakers x 2 utterances.
        key = "batch_speakers" if kind == "club" else "batch_size"
        overrides[key] = batch_size // 2 if kind == "club" else batch_size
    hparams_file = os.path.join(path, yaml_name)
    hp = load_hparams(hparams_file, overrides)
    hp["noprogressbar"] = True
    loader_kwargs = hp.get("dataloader_options")
    if kind == "club":
        from speechbrain_ssv.brains.club import DisentangleBrain

        data, loader_kwargs = _club_data(hp, hparams_file, num_workers)
        load_augmentation_banks(hp)
        brain_class = DisentangleBrain
    else:
        prepare_voxceleb_data(hp)
        load_augmentation_banks(hp)
    if kind in ("supervised", "pseudolabel"):
        from speechbrain_ssv.brains.supervised import SupervisedBrain
        from speechbrain_ssv.data.pipelines import make_supervised_datasets

        data, _, _ = make_supervised_datasets(
            hp["train_annotation"],
            hp["valid_annotation"],
            crop_seconds=hp["sentence_len"],
            label_encoder_path=os.path.join(out, "label_encoder.txt"),
            sample_rate=hp["sample_rate"],
        )
        brain_class = SupervisedBrain
        if kind == "pseudolabel":
            from speechbrain_ssv.brains.pseudolabel import PseudoLabelBrain

            brain_class = PseudoLabelBrain
    elif kind == "club":
        pass
    elif kind == "multicrop":
        from speechbrain_ssv.brains.sdpn import SDPNBrain
        from speechbrain_ssv.data.pipelines import make_multicrop_dataset

        data = make_multicrop_dataset(
            hp["train_annotation"],
            global_seconds=hp["global_seconds"],
            local_seconds=hp["local_seconds"],
            n_global=hp["n_global"],
            n_local=hp["n_local"],
            sample_rate=hp["sample_rate"],
        )
        brain_class = SDPNBrain
    else:
        from speechbrain_ssv.brains.mixap import MixAPBrain
        from speechbrain_ssv.data.pipelines import make_unlabelled_dataset

        data = make_unlabelled_dataset(
            hp["train_annotation"],
            crop_seconds=hp["segment_seconds"],
            n_views=2,
            sample_rate=hp["sample_rate"],
        )
        brain_class = MixAPBrain
    brain = brain_class(
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts=run_opts,
        checkpointer=None,
    )
    return hp, brain, data, loader_kwargs


class Timed(torch.nn.Module):
    """Wraps the augmentation module and sums its wall time (synchronised
    on CUDA so asynchronous kernels are charged to it)."""

    def __init__(self, inner, device):
        super().__init__()
        self.inner = inner
        self.cuda = str(device).startswith("cuda")
        self.seconds = 0.0
        self.enabled = True

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def forward(self, wavs, lens):
        if not self.enabled:
            return wavs, lens
        self.sync()
        start = time.perf_counter()
        out = self.inner(wavs, lens)
        self.sync()
        self.seconds += time.perf_counter() - start
        return out

    def replicate_labels(self, labels):
        return self.inner.replicate_labels(labels)


def measure(brain, hp, data, loader_kwargs, steps):
    """Run the steps; return the measured figures."""
    cuda = str(brain.device).startswith("cuda")
    timed = None
    if hp.get("wav_augment") is not None:
        timed = Timed(hp["wav_augment"], brain.device)
        brain.hparams.wav_augment = timed
    loader = brain.make_dataloader(data, stage=sb.Stage.TRAIN, **loader_kwargs)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    it = iter(loader)
    first = next(it)
    brain.fit_batch(first)
    sync()
    forks = [0]
    os.register_at_fork(
        after_in_parent=lambda: forks.__setitem__(0, forks[0] + 1)
    )
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=False)}
    if timed is not None:
        timed.seconds = 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    wait = total = 0.0
    utts = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:  # epoch end: persistent workers are reused
            it = iter(loader)
            batch = next(it)
        t1 = time.perf_counter()
        brain.fit_batch(batch)
        sync()
        t2 = time.perf_counter()
        wait += t1 - t0
        total += t2 - t0
        utts += len(batch.id)
    new_children = {
        p.pid for p in me.children(recursive=False)
    } - children_before
    spawned = max(forks[0], len(new_children))
    augment = timed.seconds if timed is not None else 0.0
    # The named baseline: the bare step on one batch already in memory.
    if timed is not None:
        timed.enabled = False
    bare = 0.0
    bare_steps = max(3, steps // 2)
    for _ in range(bare_steps):
        t0 = time.perf_counter()
        brain.fit_batch(first)
        sync()
        bare += time.perf_counter() - t0
    bare_per_utt = bare / (bare_steps * len(first.id))
    per_utt = total / utts
    return {
        "steps": steps,
        "utterances": utts,
        "step_s": total / steps,
        "utt_per_s": utts / total,
        "data_wait_fraction": wait / total,
        "augment_fraction": augment / total,
        "processes_after_first_batch": spawned,
        "bare_step_s": bare / bare_steps,
        "bare_utt_per_s": 1 / bare_per_utt,
        "ratio_to_bare": per_utt / bare_per_utt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    parser.add_argument("--size", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--data_folder", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default="fp32"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="SpeechBrain's --compile (the yaml's compile_module_keys)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    variant = "ffsvc" if args.recipe == "club" else "voxceleb"
    data_folder = args.data_folder or corpus(args.size, variant)
    run_opts = {
        "device": args.device,
        "precision": args.precision,
        "noprogressbar": True,
        "compile": args.compile,
    }
    with tempfile.TemporaryDirectory() as out:
        hp, brain, data, loader_kwargs = build(
            args.recipe,
            data_folder,
            out,
            args.num_workers,
            args.batch_size,
            run_opts,
        )
        res = measure(brain, hp, data, loader_kwargs, args.steps)
    res.update(
        recipe=args.recipe,
        size=None if args.data_folder else args.size,
        data_folder=data_folder,
        num_workers=args.num_workers,
        batch_size=hp.get("batch_size", 2 * hp.get("batch_speakers", 0)),
        device=args.device,
        device_name=torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU x{torch.get_num_threads()} threads",
        precision=args.precision,
        compile=args.compile,
        torch=torch.__version__,
    )
    print("| " + " | ".join(f"{k}" for k in res) + " |")
    print(
        "| "
        + " | ".join(
            f"{v:.3f}" if isinstance(v, float) else str(v) for v in res.values()
        )
        + " |"
    )
    if args.out:
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
