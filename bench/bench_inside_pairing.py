"""Benchmark: INSIDE pair selection for 100k and 1M speakers (512-d).

Times :func:`speechbrain_ssv.inside.pairing.layered_nn_pairs` (the paper's
layered nearest-neighbour traversal within each gender) with exact chunked
search and with the inverted-file approximate search, in torch (``ivf``)
and through faiss (``ivf-faiss``, needs ``pip install faiss-cpu``), and
:func:`~speechbrain_ssv.inside.pairing.random_pairs` (INSIDE-Syn), for
``--pairs`` pairs (default 40k, the paper's ID-Exp identity count).

Data: speaker-like embeddings, built in float32 chunks: per gender an
offset direction, ``n / --per-cluster`` cluster centres in a 64-d latent
subspace (accent/channel-like groups), each speaker a latent draw around
its centre mapped to 512-d plus isotropic noise; 55 % "m", 45 % "f".

Named baseline in the same run: exact search. Where it is run (sizes up to
``--exact-max``), the ivf row gives the time ratio and the overlap of the
two pair sets. Above it, the exact time is extrapolated: exact search of
``--check-queries`` uniformly sampled queries per gender, timed and scaled
linearly to all queries (``exact_extrapolated_s``). Quality, measured after
the timed run: *pair precision*, on up to ``--check-queries`` sampled pairs
``(a, b, layer L)`` per gender, the fraction where ``b`` is exactly ``a``'s
true ``L``-th neighbour (1 for exact search by construction); for ivf,
*recall@1* and *recall@10* of the neighbour search on the uniformly sampled
queries (same data and seed, hence the same index as the traversal).

Each (size, method) runs in a fresh child process after a warm-up on 2000
points; peak resident memory (``VmHWM``, reset after the data is built) is
reported as extra over the data and in total.

Usage::

    python bench/bench_inside_pairing.py                      # 100k and 1M
    python bench/bench_inside_pairing.py --sizes 20000 --pairs 8000

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from peak_memory import reset_peak, rss_kb

METHODS = ("exact", "ivf", "ivf-faiss", "random")
# Search mode and backend of each nearest-neighbour method.
SEARCH = {
    "exact": ("exact", "torch"),
    "ivf": ("ivf", "torch"),
    "ivf-faiss": ("ivf", "faiss"),
}
LATENT = 64


def make_speakers(n, dim, per_cluster, seed=0, chunk=100_000):
    """``[n, dim]`` float32 speaker embeddings, ids and genders."""
    import numpy as np

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, LATENT)))[0].T
    basis = basis.astype(np.float32)
    genders = np.where(rng.random(n) < 0.55, "m", "f")
    offsets = {g: rng.standard_normal(dim).astype(np.float32) for g in "mf"}
    n_clusters = max(1, n // per_cluster)
    centres = rng.standard_normal((2, n_clusters, LATENT), dtype=np.float32)
    cluster = rng.integers(n_clusters, size=n)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        g = genders[s : s + chunk]
        gi = (g == "f").astype(int)
        z = centres[gi, cluster[s : s + chunk]]
        z += 0.7 * rng.standard_normal(z.shape, dtype=np.float32)
        noise = rng.standard_normal((len(g), dim), dtype=np.float32)
        part = z @ basis + 0.15 * noise
        part += 0.3 * np.where(gi[:, None] == 1, offsets["f"], offsets["m"])
        x[s : s + chunk] = part
    speakers = [f"id{i:07d}" for i in range(n)]
    return x, speakers, genders.tolist()


def _quality(x, speakers, genders, pairs, method, n_check, seed, k=10):
    """Pair precision, neighbour recall of ivf search, and the exact search
    time extrapolated to all queries, per gender group.

    Pair precision: on sampled pairs ``(a, b, layer L)``, the fraction where
    ``b`` is exactly ``a``'s true ``L``-th neighbour. Recall@1 / @k (ivf
    only): on uniformly sampled queries, the fraction of the true 1 / ``k``
    nearest neighbours that ivf search returns (same data and seed, hence
    the same index as the traversal). The exact search of the uniform
    queries is timed and scaled to the group size.
    """
    import numpy as np
    import torch

    from speechbrain_ssv.inside.neighbours import nearest_neighbours

    row = {s: i for i, s in enumerate(speakers)}
    rng = np.random.default_rng(seed)
    hits = total = 0
    found1 = found_k = n_queries = 0
    extrapolated = 0.0
    for g in sorted(set(genders)):
        members = [i for i, gg in enumerate(genders) if gg == g]
        local = {m: j for j, m in enumerate(members)}
        xg = torch.from_numpy(x[members])
        group = [p for p in pairs if p.gender == g]
        if group:
            pick = rng.choice(
                len(group), size=min(n_check, len(group)), replace=False
            )
            sample = [group[i] for i in sorted(pick)]
            queries = [local[row[p.spk_a]] for p in sample]
            depth = max(p.layer for p in sample)
            idx, _ = nearest_neighbours(xg, depth, query_indices=queries)
            for p, nb in zip(sample, idx.tolist()):
                hits += members[nb[p.layer - 1]] == row[p.spk_b]
                total += 1
        queries = np.sort(
            rng.choice(
                len(members), size=min(n_check, len(members)), replace=False
            )
        )
        kk = min(k, len(members) - 1)
        t0 = time.perf_counter()
        exact, _ = nearest_neighbours(xg, kk, query_indices=queries)
        extrapolated += (time.perf_counter() - t0) * len(members) / len(queries)
        if method != "exact":
            mode, backend = SEARCH[method]
            approx, _ = nearest_neighbours(
                xg, kk, mode=mode, backend=backend, query_indices=queries
            )
            for e, a in zip(exact.tolist(), approx.tolist()):
                found1 += e[0] in a[:1]
                found_k += len(set(e) & set(a))
            n_queries += len(queries)
        del xg
    return {
        "pair_precision": hits / total if total else None,
        "recall_at_1": found1 / n_queries if n_queries else None,
        f"recall_at_{k}": found_k / (n_queries * k) if n_queries else None,
        "exact_extrapolated_s": extrapolated,
    }


def child(method, n, args):
    import numpy as np
    import torch

    from speechbrain_ssv.inside.manifest import write_pairs
    from speechbrain_ssv.inside.pairing import layered_nn_pairs, random_pairs

    torch.set_num_threads(args.threads)
    x, speakers, genders = make_speakers(n, args.dim, args.per_cluster)

    def run(xx, spk, gen, t):
        if method == "random":
            return random_pairs(spk, gen, t, seed=0)
        mode, backend = SEARCH[method]
        return layered_nn_pairs(
            torch.from_numpy(xx), spk, gen, t, mode=mode, backend=backend
        )

    # Warm-up: lazily loaded kernels and thread pools are a fixed cost.
    w = min(n, 2000)
    run(x[:w], speakers[:w], genders[:w], min(args.pairs, w // 2))
    reset_peak()
    base_kb = rss_kb("VmRSS")
    t0 = time.perf_counter()
    pairs = run(x, speakers, genders, args.pairs)
    seconds = time.perf_counter() - t0
    peak_kb = rss_kb("VmHWM")
    result = {
        "method": method,
        "n_speakers": n,
        "n_pairs": len(pairs),
        "seconds": seconds,
        "peak_extra_gb": (peak_kb - base_kb) / 2**20,
        "peak_total_gb": peak_kb / 2**20,
        "data_gb": x.nbytes / 2**30,
        "max_layer": max(p.layer for p in pairs),
        "mean_cosine": None,
        "pair_precision": None,
        "recall_at_1": None,
        "recall_at_10": None,
        "exact_extrapolated_s": None,
    }
    if method != "random":
        result["mean_cosine"] = float(np.mean([p.cosine for p in pairs]))
        result.update(
            _quality(
                x, speakers, genders, pairs, method, args.check_queries, seed=1
            )
        )
    if args.pairs_out:
        write_pairs(args.pairs_out, pairs)
    return result


def run_child(method, n, args, pairs_out):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method]
    cmd += ["--sizes", str(n), "--pairs-out", pairs_out]
    for key in (
        "dim", "per_cluster", "pairs", "check_queries", "exact_max",
        "threads",
    ):  # fmt: skip
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    threads = str(args.threads)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
        MALLOC_MMAP_THRESHOLD_="131072",
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{method} on {n} speakers failed:\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pair_keys(path):
    from speechbrain_ssv.inside.manifest import read_pairs

    return {frozenset((p.source_a, p.source_b)) for p in read_pairs(path)}


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000]
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--pairs", type=int, default=40_000, help="T, pairs to select"
    )
    parser.add_argument(
        "--per-cluster",
        type=int,
        default=200,
        help="speakers per latent cluster centre",
    )
    parser.add_argument(
        "--exact-max",
        type=int,
        default=100_000,
        help="largest size run with exact search (above: extrapolated)",
    )
    parser.add_argument(
        "--check-queries",
        type=int,
        default=1000,
        help="sampled pairs / queries per gender for the quality checks",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS)
    )
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            "inside_pairing.json",
        ),
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--pairs-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.sizes[0], args)))
        return

    from speechbrain_ssv.utils.io import write_json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            keys = {}
            for method in args.methods:
                if method == "exact" and n > args.exact_max:
                    continue
                out = os.path.join(tmp, f"{method}_{n}.csv")
                rows.append(run_child(method, n, args, out))
                r = rows[-1]
                print(
                    f"  {method:>9} n={n}: {r['seconds']:.1f} s, "
                    f"+{r['peak_extra_gb']:.2f} GB",
                    flush=True,
                )
                if method != "random":
                    keys[method] = _pair_keys(out)
            for r in rows:
                if "exact" in keys and r["n_speakers"] == n:
                    if r["method"] in keys and r["method"] != "exact":
                        common = keys["exact"] & keys[r["method"]]
                        overlap = len(common) / len(keys["exact"])
                        r["pair_overlap_with_exact"] = overlap

    exact_s = {
        r["n_speakers"]: r["seconds"] for r in rows if r["method"] == "exact"
    }
    for r in rows:
        if r["method"] == "random":
            # Random pairing searches nothing: no exact counterpart.
            r["exact_seconds_ref"] = r["speedup_vs_exact"] = None
            continue
        ref = exact_s.get(r["n_speakers"], r.get("exact_extrapolated_s"))
        r["exact_seconds_ref"] = ref
        r["speedup_vs_exact"] = ref / r["seconds"] if ref else None
    print(
        f"\nINSIDE pair selection, {args.dim}-d, T={args.pairs} pairs, "
        f"{args.threads} threads (exact at sizes <= {args.exact_max}, "
        "extrapolated from sampled queries above)"
    )
    print(
        f"{'speakers':>9} {'method':>9} {'seconds':>8} {'exact s':>8} "
        f"{'x exact':>7} {'+GB':>6} {'total GB':>8} {'layers':>6} "
        f"{'pair prec':>9} {'R@1':>6} {'R@10':>6} {'overlap':>7} "
        f"{'mean cos':>8}"
    )
    for r in rows:
        print(
            f"{r['n_speakers']:>9} {r['method']:>9} {r['seconds']:>8.1f} "
            f"{_fmt(r['exact_seconds_ref'], '.0f'):>8} "
            f"{_fmt(r['speedup_vs_exact'], '.1f'):>7} "
            f"{r['peak_extra_gb']:>6.2f} {r['peak_total_gb']:>8.2f} "
            f"{r['max_layer']:>6} {_fmt(r['pair_precision'], '.3f'):>9} "
            f"{_fmt(r['recall_at_1'], '.3f'):>6} "
            f"{_fmt(r['recall_at_10'], '.3f'):>6} "
            f"{_fmt(r.get('pair_overlap_with_exact'), '.3f'):>7} "
            f"{_fmt(r['mean_cosine'], '.4f'):>8}"
        )
    import torch

    write_json(
        args.out,
        {
            "config": {
                k: getattr(args, k)
                for k in (
                    "dim",
                    "pairs",
                    "per_cluster",
                    "exact_max",
                    "check_queries",
                    "threads",
                )  # fmt: skip
            }
            | {"torch": torch.__version__, "cpu_count": os.cpu_count()},
            "rows": rows,
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
