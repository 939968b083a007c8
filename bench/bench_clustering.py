"""Benchmark: clustering N synthetic 400-d points into 10k clusters with
the multi-objective model ("ours", a fixed number of epochs) and with
scikit-learn's MiniBatchKMeans (the named baseline), in the same run.

Data: Gaussian blobs, ``--clusters`` centres drawn from N(0, I) and
points ``centre + --spread * N(0, I)``, balanced, generated in chunks in
float32. Both methods go through the recipe's code path,
``cluster_representations`` of ``recipes/VoxCeleb/PseudoLabel/train.py``,
with the clustering settings of that recipe's ``pseudolabel.yaml`` (l2 input
normalisation; ours: VAT radii on a 10k reference subset, mini-batch
training, chunked assignment of every point; MiniBatchKMeans: k-means++
init, ``max_iter`` = the same number of passes as ours, one init, then
scikit-learn's chunked labelling). Each (size, method) runs in a fresh
child process, after a warm-up on 1000 points; its peak resident memory
(``VmHWM``, reset after the data is built) is reported as extra over the
data, and in total.

Usage::

    python bench/bench_clustering.py                          # 100k and 1M
    python bench/bench_clustering.py --sizes 2000 --clusters 50 --dim 32 \
        --hidden-size 64 --batch-size 512                       # seconds
    python bench/bench_clustering.py --device cuda --hidden-size 20800

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import json
import os
import subprocess
import sys
import time

from peak_memory import reset_peak, rss_kb

METHODS = ("minibatch_kmeans", "faiss_kmeans", "ours")


def make_blobs(n, dim, n_clusters, spread, seed=0, chunk=100_000):
    """``[n, dim]`` float32 points around ``n_clusters`` centres and their
    labels, built chunk by chunk (no float64 copy of the whole set)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    labels = np.arange(n) % n_clusters
    rng.shuffle(labels)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        part = labels[start : start + chunk]
        noise = rng.standard_normal((part.size, dim), dtype=np.float32)
        x[start : start + chunk] = centres[part] + spread * noise
    return x, labels


def recipe_clustering():
    """The pseudo-label recipe's train.py as a module, and the clustering
    settings and optimizer of its full-scale yaml (the paper's)."""
    import importlib.util

    from hyperpyyaml import load_hyperpyyaml

    folder = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "recipes",
        "VoxCeleb", "PseudoLabel",
    )  # fmt: skip
    spec = importlib.util.spec_from_file_location(
        "pseudolabel_train", os.path.join(folder, "train.py")
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with open(os.path.join(folder, "hparams", "pseudolabel.yaml")) as f:
        hp = load_hyperpyyaml(f, {"data_folder": "unused"})
    # The bench reports its own measurements: no recipe train_log.txt.
    paper = dict(hp["clustering_hparams"], train_logger=None)
    return recipe, paper, hp["clustering_opt_class"]


def child(method, n, args):
    # Everything is imported before the measurement: loading library code
    # is not the methods' cost (hence the otherwise unused imports).
    import functools

    import numpy as np
    import sklearn.cluster  # noqa: F401
    import torch

    from speechbrain_ssv.brains.clustering import ClusteringBrain
    from speechbrain_ssv.clustering.baselines import cluster
    from speechbrain_ssv.clustering.metrics import cluster_accuracy
    from speechbrain_ssv.lobes.clustering import ClusteringMLP

    recipe, paper, opt_class = recipe_clustering()

    def cluster_representations(method, x, k, true_labels=None, **kw):
        """The recipe's dispatcher, l2 input normalisation as the paper;
        ``method`` is what the yaml's ``clustering_method`` would hold."""
        return recipe.cluster_representations(
            method, x, k, l2_normalize=True, standardize=False, center=False,
            seed=kw.pop("seed", 0), true=true_labels, **kw,
        )  # fmt: skip

    torch.set_num_threads(args.threads)
    x, y = make_blobs(n, args.dim, args.clusters, args.spread)
    batch = min(args.batch_size, n)
    if method == "ours":
        # The yaml's !name:speechbrain_ssv.brains.clustering.ClusteringBrain
        runs = ClusteringBrain
        kwargs = {
            "model_factory": functools.partial(
                ClusteringMLP, hidden_size=args.hidden_size
            ),
            "clustering_hparams": {
                **paper,
                "number_of_epochs": args.epochs,
                "batch_size": batch,
                "knn_reference": args.knn_reference,
                "eval_every": 1 if args.history else args.epochs,
                "eval_ami": False,
                **json.loads(args.ours_hparams),
            },
            "opt_class": opt_class,
            # The per-epoch metrics against the blobs (--history) are
            # computed on every point, so they add to the timed cost.
            "true_labels": y if args.history else None,
            "device": args.device,
        }
    elif method == "faiss_kmeans":
        # faiss' own defaults but the iteration count: random initial
        # centres, at most 256 points per centre sampled for the fit.
        # The yaml's !name:speechbrain_ssv.clustering.baselines.cluster
        runs = functools.partial(cluster, method=method, niter=args.faiss_niter)
        kwargs = {}
    else:
        runs = functools.partial(
            cluster, method=method, batch_size=batch, max_iter=args.epochs,
            n_init=1,
        )  # fmt: skip
        kwargs = {}
    # Warm-up on a small slice: lazily loaded kernels, thread pools and
    # allocator caches are a fixed cost, not the cost of clustering N points.
    warm, warm_runs = dict(kwargs), runs
    if method == "ours":
        warm["clustering_hparams"] = dict(
            kwargs["clustering_hparams"], batch_size=256, number_of_epochs=1
        )
        warm["clustering_hparams"]["warm_start"] = None
        warm["true_labels"] = None
    elif method == "minibatch_kmeans":
        warm_runs = functools.partial(runs, batch_size=256)
    cluster_representations(warm_runs, x[:1000], min(args.clusters, 50), **warm)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    reset_peak()
    base_kb = rss_kb("VmRSS")
    t0 = time.perf_counter()
    # The data stay the same (blob seed 0); --seed changes the methods'
    # random draws (initial centres, weights, batches) only.
    torch.manual_seed(args.seed)
    out = cluster_representations(
        runs, x, args.clusters, seed=args.seed, **kwargs
    )
    seconds = time.perf_counter() - t0
    peak_kb = rss_kb("VmHWM")
    labels = out["labels"]
    from sklearn.metrics import normalized_mutual_info_score

    result = {
        "method": method,
        "n_points": n,
        "seconds": seconds,
        "peak_extra_gb": (peak_kb - base_kb) / 2**20,
        "peak_total_gb": peak_kb / 2**20,
        "data_gb": x.nbytes / 2**30,
        "acc": cluster_accuracy(y, labels),
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "clusters_used": int(np.unique(labels).size),
    }
    if out["history"] and args.history:
        result["history"] = [
            {k: h[k] for k in ("epoch", "acc", "nmi", "clusters_used")}
            for h in out["history"]
        ]
    if args.device.startswith("cuda"):
        result["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def run_child(method, n, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method]
    cmd += ["--sizes", str(n)]
    for key in (
        "dim", "clusters", "spread", "epochs", "hidden_size", "batch_size",
        "knn_reference", "threads", "device", "faiss_niter", "ours_hparams",
        "seed",
    ):  # fmt: skip
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.history:
        cmd.append("--history")
    # One thread pool size for torch, numpy/BLAS and scikit-learn; a fixed
    # mmap threshold returns large freed arrays to the OS, so VmHWM tracks
    # live memory closely.
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
            f"{method} on {n} points failed:\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000]
    )
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument(
        "--spread", type=float, default=0.5, help="blob standard deviation"
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="passes over the data (both)"
    )
    parser.add_argument(
        "--hidden-size",
        type=int,
        default=1200,
        help="S of the d-S-S-C model (IMSAT: 1200; the paper: 20800, GPU)",
    )
    parser.add_argument("--batch-size", type=int, default=10240)
    parser.add_argument("--knn-reference", type=int, default=10_000)
    parser.add_argument(
        "--faiss-niter",
        type=int,
        default=20,
        help="Lloyd iterations of the faiss k-means reference row",
    )
    parser.add_argument(
        "--ours-hparams",
        default="{}",
        help="JSON object of further clustering_hparams for ours, e.g. "
        '\'{"warm_start": {"method": "faiss_kmeans", "epochs": 1, "lr": 0.1}, '
        '"supcon_weight": 0}\' (timed: a warm start is part of its cost)',
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the methods (the blobs are always drawn with seed 0)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS)
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="ours: ACC/NMI/clusters used after every epoch (timed too)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            "clustering.json",
        ),
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.sizes[0], args)))
        return

    from speechbrain_ssv.utils.io import write_json

    rows = []
    for n in args.sizes:
        for method in args.methods:
            rows.append(run_child(method, n, args))
            r = rows[-1]
            print(
                f"  {method:>16} n={n}: {r['seconds']:.1f} s, "
                f"+{r['peak_extra_gb']:.2f} GB",
                flush=True,
            )
    print(
        f"\nclustering {args.dim}-d blobs into {args.clusters} clusters, "
        f"{args.epochs} pass(es), batch {args.batch_size}, "
        f"{args.threads} threads, {args.device}"
    )
    head = (
        f"{'points':>9} {'method':>16} {'seconds':>9} {'x MBK':>6} "
        f"{'+GB':>6} {'total GB':>8} {'ACC':>6} {'NMI':>6} {'used':>6}"
    )
    print(head)
    base = {r["n_points"]: r for r in rows if r["method"] == "minibatch_kmeans"}
    for r in rows:
        ref = base.get(r["n_points"])
        r["time_vs_minibatch_kmeans"] = (
            r["seconds"] / ref["seconds"] if ref else None
        )
        ratio = r["time_vs_minibatch_kmeans"]
        print(
            f"{r['n_points']:>9} {r['method']:>16} {r['seconds']:>9.1f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>6} "
            f"{r['peak_extra_gb']:>6.2f} {r['peak_total_gb']:>8.2f} "
            f"{r['acc']:>6.3f} {r['nmi']:>6.3f} {r['clusters_used']:>6}"
        )
    for r in rows:
        if r.get("history"):
            print(f"\nours on {r['n_points']} points, per epoch:")
            print(f"{'epoch':>6} {'ACC':>6} {'NMI':>6} {'used':>6}")
            for h in r["history"]:
                print(
                    f"{h['epoch']:>6} {h['acc']:>6.3f} {h['nmi']:>6.3f} "
                    f"{h['clusters_used']:>6}"
                )
    import torch

    write_json(
        args.out,
        {
            "config": {
                k: getattr(args, k)
                for k in (
                    "dim",
                    "clusters",
                    "spread",
                    "epochs",
                    "hidden_size",
                    "batch_size",
                    "knn_reference",
                    "faiss_niter",
                    "ours_hparams",
                    "seed",
                    "threads",
                    "device",
                    "history",
                )  # fmt: skip
            }
            | {"torch": torch.__version__, "cpu_count": os.cpu_count()},
            "rows": rows,
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
