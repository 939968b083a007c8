#!/usr/bin/env python3
"""Training-step time and peak memory of the supervised minivox config.

Builds the modules from ``recipes/VoxCeleb/Supervised/hparams/ecapa_minivox.yaml``
(no data needed: random waveforms of the configured crop length) and times
forward + backward + optimizer step, with and without the waveform
augmentation's cheapest member (DropFreq; noise and reverb need a corpus).
The paper-scale ECAPA (C=1024) is measured in the same run as the named
baseline, so the ratio is meaningful on a shared machine.

Usage::

    python bench/bench_train_step.py [--steps 5] [--batch_size 32]

Prints a table and writes ``bench/results/train_step.json``.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import resource
import sys
import time

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.processing.features import InputNormalization

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from speechbrain_ssv.utils.io import write_json  # noqa: E402

CONFIGS = {
    "minivox (C=192, 60 mels)": {
        "n_mels": 60,
        "channels": [192] * 4 + [576],
        "att": 64,
    },
    "paper (C=1024, 80 mels)": {
        "n_mels": 80,
        "channels": [1024] * 4 + [3072],
        "att": 128,
    },
}


def time_steps(cfg, batch_size, seconds, steps, n_classes=160):
    """Mean seconds per training step and the process's peak RSS (MB).

    Arguments
    ---------
    cfg : dict
        ``n_mels``, ``channels``, ``att``.
    batch_size : int
        Utterances per step.
    seconds : float
        Crop length.
    steps : int
        Timed steps (after one warm-up step).
    n_classes : int
        Classifier size.

    Returns
    -------
    dict
        Timing and memory figures.
    """
    torch.manual_seed(0)
    feats = Fbank(n_mels=cfg["n_mels"])
    norm = InputNormalization(norm_type="sentence", std_norm=False)
    enc = ECAPA_TDNN(
        cfg["n_mels"],
        channels=cfg["channels"],
        attention_channels=cfg["att"],
        lin_neurons=192,
    )
    cls = Classifier(192, out_neurons=n_classes)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    params = list(enc.parameters()) + list(cls.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    wavs = torch.randn(batch_size, int(16000 * seconds)) * 0.1
    lens = torch.ones(batch_size)
    labels = torch.randint(0, n_classes, (batch_size, 1))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        x = norm(feats(wavs), lens)
        logits = cls(enc(x, lens))
        loss = loss_fn(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "s_per_step": sum(times) / len(times),
        "utt_per_s": batch_size / (sum(times) / len(times)),
        "params_M": sum(p.numel() for p in enc.parameters()) / 1e6,
        "peak_rss_MB": peak_mb,
    }


def main():
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "train_step.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name, cfg in CONFIGS.items():
        rows[name] = time_steps(cfg, args.batch_size, args.seconds, args.steps)
    base = rows["paper (C=1024, 80 mels)"]["s_per_step"]
    print(
        f"train step, batch {args.batch_size} x {args.seconds} s, {args.threads} threads, CPU"
    )
    print(
        f"| {'config':<26} | {'s/step':>7} | {'utt/s':>6} | {'params M':>8} | {'x faster':>8} |"
    )
    print(
        "|"
        + "-" * 28
        + "|"
        + "-" * 9
        + "|"
        + "-" * 8
        + "|"
        + "-" * 10
        + "|"
        + "-" * 10
        + "|"
    )
    for name, r in rows.items():
        r["speedup_vs_paper"] = base / r["s_per_step"]
        print(
            f"| {name:<26} | {r['s_per_step']:>7.2f} | {r['utt_per_s']:>6.1f} | "
            f"{r['params_M']:>8.2f} | {r['speedup_vs_paper']:>8.2f} |"
        )
    print(
        f"peak RSS of the process: {max(r['peak_rss_MB'] for r in rows.values()):.0f} MB"
    )
    write_json(
        args.out,
        {
            "batch_size": args.batch_size,
            "seconds": args.seconds,
            "threads": args.threads,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
