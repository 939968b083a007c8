"""Benchmark: cosine scoring + EER/minDCF on large synthetic trial lists.

Each measurement runs in a fresh child process, so its peak resident memory
(``VmHWM``, reset just before the timed code) is not polluted by earlier runs.
The baseline is SpeechBrain's ``EER`` + ``minDCF`` on a list small enough
for it, measured in the same run; the reported ratio is baseline time / ours.

Usage::

    python bench/bench_scoring.py                       # 100k and 1M trials
    python bench/bench_scoring.py --sizes 100000 --sb-trials 2000

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from speechbrain_ssv.eval.metrics import eer_mindcf
from speechbrain_ssv.eval.scoring import cosine_scores
from speechbrain_ssv.utils.io import write_json

UTTS_PER_SPK = 20


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_free_memory():
    # Give freed heap pages back to the OS so that the RSS baseline only
    # counts live data (otherwise the timed code reuses pages freed while
    # building the data, and its peak is under-counted).
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    _release_free_memory()
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to now.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_data(n_trials, n_utts, dim, seed=0, target_frac=0.1):
    """Speaker-structured embeddings and a trial list over them."""
    rng = np.random.default_rng(seed)
    n_spk = n_utts // UTTS_PER_SPK
    centres = rng.standard_normal((n_spk, dim), dtype=np.float32)
    emb = np.repeat(centres, UTTS_PER_SPK, axis=0)
    emb += 1.5 * rng.standard_normal(emb.shape, dtype=np.float32)
    enrol = rng.integers(0, emb.shape[0], n_trials)
    labels = (rng.random(n_trials) < target_frac).astype(np.int8)
    other = rng.integers(0, emb.shape[0], n_trials)
    same = (enrol // UTTS_PER_SPK) * UTTS_PER_SPK + (
        (enrol % UTTS_PER_SPK + rng.integers(1, UTTS_PER_SPK, n_trials))
        % UTTS_PER_SPK
    )
    test = np.where(labels == 1, same, other)
    # A random "other" can hit the same speaker: label it truthfully.
    labels = (enrol // UTTS_PER_SPK == test // UTTS_PER_SPK).astype(np.int8)
    return torch.from_numpy(emb), enrol, test, labels


def child_ours(n_trials, n_utts, dim):
    emb, enrol, test, labels = make_data(n_trials, n_utts, dim)
    # Warm-up: thread pools and lazy library loading are not part of the cost.
    eer_mindcf(
        cosine_scores(emb, emb, enrol[:1000], test[:1000]), labels[:1000]
    )
    _reset_peak()
    base_kb = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    scores = cosine_scores(emb, emb, enrol, test)
    t1 = time.perf_counter()
    m = eer_mindcf(scores, labels)
    t2 = time.perf_counter()
    peak_kb = _rss_kb("VmHWM") - base_kb
    return {
        "n_trials": n_trials,
        "score_s": t1 - t0,
        "metrics_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_extra_mb": peak_kb / 1024,
        "eer": m["eer"],
        "min_dcf@0.01": m["min_dcf@0.01"],
    }


def child_sb(n_trials, n_utts, dim):
    from speechbrain.utils.metric_stats import EER, minDCF

    emb, enrol, test, labels = make_data(n_trials, n_utts, dim)
    scores = cosine_scores(emb, emb, enrol, test)
    pos = torch.from_numpy(scores[labels == 1]).float()
    neg = torch.from_numpy(scores[labels == 0]).float()
    _reset_peak()
    base_kb = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    m = eer_mindcf(scores, labels)
    t1 = time.perf_counter()
    ours_peak = _rss_kb("VmHWM") - base_kb
    _reset_peak()
    t2 = time.perf_counter()
    sb_eer, _ = EER(pos, neg)
    sb_dcf, _ = minDCF(pos, neg, p_target=0.01)
    t3 = time.perf_counter()
    sb_peak = _rss_kb("VmHWM") - base_kb
    return {
        "n_trials": n_trials,
        "ours_metrics_s": t1 - t0,
        "sb_metrics_s": t3 - t2,
        "speedup": (t3 - t2) / (t1 - t0),
        "ours_peak_extra_mb": ours_peak / 1024,
        "sb_peak_extra_mb": sb_peak / 1024,
        "ours_eer": m["eer"],
        "sb_eer": sb_eer,
        "ours_min_dcf@0.01": m["min_dcf@0.01"],
        "sb_min_dcf@0.01_normalised": sb_dcf / 0.01,
    }


def run_child(mode, n_trials, args):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        "--sizes",
        str(n_trials),
        "--n-utts",
        str(args.n_utts),
        "--dim",
        str(args.dim),
        "--threads",
        str(args.threads),
    ]
    # A fixed mmap threshold makes every large array its own mapping, returned
    # to the OS when freed, so VmHWM tracks live memory closely.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000]
    )
    parser.add_argument("--n-utts", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--sb-trials", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(__file__), "results", "bench_scoring.json"
        ),
    )
    parser.add_argument(
        "--child", choices=["ours", "sb"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.child:
        fn = child_ours if args.child == "ours" else child_sb
        print(json.dumps(fn(args.sizes[0], args.n_utts, args.dim)))
        return

    rows = [run_child("ours", n, args) for n in args.sizes]
    print(f"cosine scoring + eer_mindcf ({args.n_utts} utts, {args.dim}-d)")
    print(
        f"{'trials':>10} {'score s':>8} {'metrics s':>9} {'total s':>8} {'peak MB':>8} {'B/trial':>8}"
    )
    for r in rows:
        r["bytes_per_trial"] = r["peak_extra_mb"] * 2**20 / r["n_trials"]
        print(
            f"{r['n_trials']:>10} {r['score_s']:>8.3f} {r['metrics_s']:>9.3f} "
            f"{r['total_s']:>8.3f} {r['peak_extra_mb']:>8.1f} {r['bytes_per_trial']:>8.1f}"
        )
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = (
            (b["peak_extra_mb"] - a["peak_extra_mb"])
            * 2**20
            / (b["n_trials"] - a["n_trials"])
        )
        fixed = a["peak_extra_mb"] - slope * a["n_trials"] / 2**20
        print(
            f"memory: {fixed:.1f} MB fixed (normalised embeddings, trial "
            f"chunks) + {slope:.1f} B per extra trial; time ratio "
            f"{b['total_s'] / a['total_s']:.1f}x for "
            f"{b['n_trials'] / a['n_trials']:.0f}x trials"
        )
        rows[-1]["marginal_bytes_per_trial"] = slope

    sb = run_child("sb", args.sb_trials, args)
    print(f"\nvs SpeechBrain EER + minDCF(p=0.01) on {sb['n_trials']} trials")
    print(
        f"  SpeechBrain {sb['sb_metrics_s']:.3f} s ({sb['sb_peak_extra_mb']:.0f} MB), "
        f"ours {sb['ours_metrics_s'] * 1e3:.2f} ms ({sb['ours_peak_extra_mb']:.1f} MB): "
        f"{sb['speedup']:.0f}x faster"
    )
    print(
        f"  EER ours {sb['ours_eer']:.5f} / SB {sb['sb_eer']:.5f}; "
        f"minDCF@0.01 ours {sb['ours_min_dcf@0.01']:.5f} / SB normalised "
        f"{sb['sb_min_dcf@0.01_normalised']:.5f}"
    )
    result = {
        "config": {
            "n_utts": args.n_utts,
            "dim": args.dim,
            "threads": args.threads,
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
        },
        "ours": rows,
        "vs_speechbrain": sb,
    }
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
