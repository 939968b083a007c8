#!/usr/bin/env python3
"""INSIDE on CPU: speaker-encoder embedding cost per clip and synthesis
real-time factor, through the recipe's own code (``load_yourtts``,
``embed_wavs``, ``synthesize_identities``) on random-weight checkpoints in
the YourTTS release layout: the tiny test model and one with the released
model's sizes (no weights can be downloaded here, and the cost of a forward
pass does not depend on the weights' values).

The baseline of the ratio column is the tiny model at batch 1, measured in
the same run.

Usage::

    .venv/bin/python bench/bench_inside_synthesis.py [--sizes tiny yourtts]
        [--identities 4] [--utts 4] [--batch-sizes 1 4] [--threads 1]

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from speechbrain_ssv.utils.io import write_json  # noqa: E402


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _clips(n, seconds, sample_rate=16000, seed=0):
    # Band-limited noise with a syllable-rate envelope: speech-like energy,
    # never silent (silent clips are skipped by the embedder)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = []
    for _ in range(n):
        x = np.convolve(rng.standard_normal(t.size), np.ones(8) / 8, "same")
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t) ** 2
        out.append((0.1 * x * env).astype(np.float32))
    return out


def run(size, args, folder):
    from speechbrain_ssv.inside.speaker_encoder import embed_wavs
    from speechbrain_ssv.inside.synthesize import synthesize_identities
    from speechbrain_ssv.inside.tiny import build_tiny_yourtts
    from speechbrain_ssv.inside.tts import load_yourtts

    model_dir = os.path.join(folder, size)
    build_tiny_yourtts(model_dir, seed=0, size=size)
    start = time.perf_counter()
    tts = load_yourtts(model_dir)
    load_s = time.perf_counter() - start
    n_params = sum(p.numel() for p in tts.model.parameters())
    rows = []
    clips = _clips(args.clips, args.clip_seconds)
    for num_eval in args.num_eval:
        embed_wavs(tts, clips[:1], num_eval=num_eval)  # warm-up
        start = time.perf_counter()
        embed_wavs(tts, clips, num_eval=num_eval, sample_rate=16000)
        per_clip = (time.perf_counter() - start) / len(clips)
        rows.append(
            {
                "size": size,
                "task": f"embed, num_eval={num_eval}",
                "value": per_clip,
                "unit": "s/clip",
            }
        )
    rng = np.random.default_rng(0)
    ids = {
        f"syn{i:06d}": rng.standard_normal(tts.d_vector_dim)
        for i in range(args.identities)
    }
    for batch in args.batch_sizes:
        out = synthesize_identities(
            tts,
            ids,
            os.path.join(folder, f"synth_{size}_b{batch}"),
            args.utts,
            batch_size=batch,
            progress=False,
        )
        rows.append(
            {
                "size": size,
                "task": f"synthesize, batch={batch}",
                "value": out["realtime_factor"],
                "unit": "x real time",
                "audio_seconds": out["audio_seconds"],
                "wall_seconds": out["wall_seconds"],
            }
        )
    return {
        "size": size,
        "generator_parameters": n_params,
        "load_seconds": load_s,
        "rows": rows,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "yourtts"])
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--utts", type=int, default=4)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--num-eval", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        default=os.path.join(REPO, "bench", "results", "inside_synthesis.json"),
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-inside-") as folder:
        for size in args.sizes:
            results.append(run(size, args, folder))
    base = next(
        (
            r["value"]
            for res in results
            for r in res["rows"]
            if res["size"] == "tiny" and r["task"].startswith("synthesize")
        ),
        None,
    )
    print(f"{'model':<9} {'params':>8} {'task':<22} {'value':>9} unit")
    for res in results:
        for r in res["rows"]:
            ratio = ""
            if base and r["task"].startswith("synthesize"):
                ratio = f"  ({r['value'] / base:.3f}x tiny batch 1)"
            print(
                f"{res['size']:<9} {res['generator_parameters'] / 1e6:>7.2f}M "
                f"{r['task']:<22} {r['value']:>9.3f} {r['unit']}{ratio}"
            )
    report = {
        "threads": args.threads,
        "torch": torch.__version__,
        "peak_rss_gb": _peak_rss_gb(),
        "results": results,
    }
    write_json(args.out, report)
    print(f"peak RSS {report['peak_rss_gb']:.2f} GB -> {args.out}")


if __name__ == "__main__":
    main()
