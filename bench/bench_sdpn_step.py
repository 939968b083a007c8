#!/usr/bin/env python3
"""Time and peak memory of one SDPN training step at the paper's scale.

Runs ``SDPNBrain.fit_batch`` (teacher on the global views, student on the
local views with SpecAugment masks, SDPN loss with Sinkhorn + KoLeo +
mean-entropy, per-tensor clipping, SGD step, EMA update) with the paper's
modules: ECAPA-TDNN C=1024 with 80 mels and a 512-d embedding, the
512-2048-2048-256 head and 1024 prototypes; views 1 x 4 s + 4 x 2 s per
utterance; per-GPU batch 96 (the authors' ``batch_size_per_gpu``, 4 GPUs).
Waveforms are random (no corpus needed), so the noise/reverb augmentation
(a data-loading cost) is not included. The named baseline measured in the
same run is the same step with the minivox modules (C=192, 60 mels,
192-512-512-128 head, 256 prototypes) at the same batch and views.

On CPU a batch of 96 takes minutes per step: pass ``--batch_size`` (e.g. 8)
to measure a smaller batch; throughput is reported per utterance.

Usage::

    python bench/bench_sdpn_step.py [--batch_size 96] [--steps 1] [--device cpu]
    python bench/bench_sdpn_step.py --device cuda --precision fp16

Prints a table and writes ``bench/results/sdpn_step.json``.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from speechbrain_ssv.brains.sdpn import SDPNBrain  # noqa: E402
from speechbrain_ssv.lobes.heads import ProjectionHead, Prototypes  # noqa: E402
from speechbrain_ssv.lobes.teacher import EMATeacher  # noqa: E402
from speechbrain_ssv.utils.io import write_json  # noqa: E402

CONFIGS = {
    "paper (C=1024, 80 mels)": {"n_mels": 80, "channels": [1024] * 4 + [3072], "att": 128, "emb": 512,
                                "hidden": 2048, "out": 256, "k": 1024},
    "minivox (C=192, 60 mels)": {"n_mels": 60, "channels": [192] * 4 + [576], "att": 64, "emb": 192,
                                 "hidden": 512, "out": 128, "k": 256},
}  # fmt: skip


def build_brain(cfg, device, precision, save_dir):
    """An SDPNBrain with the paper's loss settings and ``cfg``'s sizes.

    Arguments
    ---------
    cfg : dict
        Module sizes.
    device : str
        Torch device.
    precision : str
        ``fp32``, ``fp16`` or ``bf16`` (SpeechBrain's mixed precision).
    save_dir : str
        Unused checkpoint folder (the brain needs none).

    Returns
    -------
    SDPNBrain
        Ready to ``fit_batch``.
    """

    def ecapa():
        return ECAPA_TDNN(cfg["n_mels"], channels=cfg["channels"], attention_channels=cfg["att"],
                          lin_neurons=cfg["emb"])  # fmt: skip

    def head():
        return ProjectionHead(cfg["emb"], cfg["hidden"], cfg["out"])

    student, s_head, t_enc, t_head = ecapa(), head(), ecapa(), head()
    modules = {
        "compute_features": Fbank(n_mels=cfg["n_mels"]),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": student,
        "projector": s_head,
        "teacher_embedding_model": t_enc,
        "teacher_projector": t_head,
        "prototypes": Prototypes(cfg["k"], cfg["out"]),
    }
    hp = {
        "method": "sdpn", "n_global": 1, "n_local": 4, "teacher": EMATeacher([student, s_head], [t_enc, t_head]),
        "ema_base": 0.996, "ema_final": 1.0, "total_steps": 426450, "teacher_temp": 0.04, "sharpen_temp": 1.0,
        "student_temp": 0.1, "sinkhorn_iters": 3, "memax_weight": 1.0, "koleo_weight": 0.1,
        "koleo_reduction": "sum", "pair_reduction": "mean", "grad_clip_per_tensor": 3.0,
        "collapse_min_perplexity": 2.0, "collapse_min_std": 0.05, "spec_augment_prob": 0.2,
        "time_mask": SpectrogramDrop(0, 10, 1, 1, dim=1), "freq_mask": SpectrogramDrop(0, 6, 1, 1, dim=2),
    }  # fmt: skip
    brain = SDPNBrain(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(
            p, lr=0.4, momentum=0.9, weight_decay=5e-5
        ),
        hparams=hp,
        run_opts={
            "device": device,
            "precision": precision,
            "noprogressbar": True,
        },
    )
    brain.init_optimizers()
    brain.modules.train()
    return brain


def make_batch(batch_size, global_s=4.0, local_s=2.0, n_local=4, sr=16000):
    """Random waveforms laid out as the multi-crop dataset's batches.

    Arguments
    ---------
    batch_size : int
        Utterances.
    global_s, local_s : float
        View lengths.
    n_local : int
        Local views.
    sr : int
        Sampling rate.

    Returns
    -------
    PaddedBatch
        ``id, global0, local0..``.
    """
    rows = []
    for i in range(batch_size):
        row = {"id": f"u{i}", "global0": 0.1 * torch.randn(int(global_s * sr))}
        for v in range(n_local):
            row[f"local{v}"] = 0.1 * torch.randn(int(local_s * sr))
        rows.append(row)
    return PaddedBatch(rows)


def time_steps(cfg, args):
    """Mean seconds per step and peak memory for one configuration.

    Arguments
    ---------
    cfg : dict
        Module sizes.
    args : argparse.Namespace
        Command-line options.

    Returns
    -------
    dict
        Figures for the table.
    """
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        brain = build_brain(cfg, args.device, args.precision, tmp)
        batch = make_batch(args.batch_size)
        cuda = args.device.startswith("cuda")
        times = []
        for i in range(args.steps + args.warmup):
            if cuda:
                torch.cuda.synchronize()
                if i == args.warmup:
                    torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            brain.fit_batch(batch)
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        sec = sum(times) / len(times)
        row = {
            "s_per_step": sec,
            "utt_per_s": args.batch_size / sec,
            "student_params_M": sum(
                p.numel() for p in brain.modules.embedding_model.parameters()
            )
            / 1e6,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024,
        }
        if cuda:
            row["peak_gpu_MB"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main():
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch_size",
        type=int,
        default=96,
        help="utterances per step (paper: 96 per GPU)",
    )
    parser.add_argument("--steps", type=int, default=1, help="timed steps")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed steps first"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16", "bf16"]
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "sdpn_step.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {name: time_steps(cfg, args) for name, cfg in CONFIGS.items()}
    base = rows["minivox (C=192, 60 mels)"]["s_per_step"]
    print(f"SDPN step, batch {args.batch_size} x (1 x 4 s + 4 x 2 s), {args.device} {args.precision}, "
          f"{args.threads} threads")  # fmt: skip
    print(
        f"| {'config':<26} | {'s/step':>8} | {'utt/s':>7} | {'params M':>8} | {'x minivox':>9} |"
    )
    print(
        "|"
        + "-" * 28
        + "|"
        + "-" * 10
        + "|"
        + "-" * 9
        + "|"
        + "-" * 10
        + "|"
        + "-" * 11
        + "|"
    )
    for name, r in rows.items():
        r["time_vs_minivox"] = r["s_per_step"] / base
        print(f"| {name:<26} | {r['s_per_step']:>8.2f} | {r['utt_per_s']:>7.2f} | "
              f"{r['student_params_M']:>8.2f} | {r['time_vs_minivox']:>9.2f} |")  # fmt: skip
    print(
        f"peak RSS of the process: {max(r['peak_rss_MB'] for r in rows.values()):.0f} MB"
    )
    if "peak_gpu_MB" in rows["paper (C=1024, 80 mels)"]:
        print(
            f"peak GPU memory (paper config): {rows['paper (C=1024, 80 mels)']['peak_gpu_MB']:.0f} MB"
        )
    write_json(args.out, {"batch_size": args.batch_size, "views": "1 x 4 s global + 4 x 2 s local",
                          "device": args.device, "precision": args.precision, "threads": args.threads,
                          "steps": args.steps, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
