"""Benchmark: where one training step of the multi-objective clustering
model spends its time, and SupCon computed directly on the ``[B, C]``
logits vs through the output layer's Gram (``supcon_loss_low_rank``).

One ``ClusteringMLP`` (d-S-S-C) on a batch of ``B`` random l2-normalised
points; each term is timed forward + backward, as ``ClusteringBrain`` runs
it (VAT: one power iteration and the adversarial KL; mixup: the mixed
forward and its KL; SupCon on the online ``argmax`` labels), after a
warm-up of the same call on a small batch. Both SupCon rows include their
own clean forward. The named baseline is the direct SupCon; the ratio is
its time over the low-rank one's, and the two values are checked to
agree.

Usage::

    python bench/bench_clustering_step.py          # the 1M bench's shapes, ~3 min
    python bench/bench_clustering_step.py --batch-size 2048 --clusters 2000

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import time

import torch
import torch.nn.functional as F

from speechbrain_ssv.lobes.clustering import ClusteringMLP
from speechbrain_ssv.losses.clustering import (
    vat_loss,
    virtual_mixup_loss,
)
from speechbrain_ssv.losses.contrastive import (
    supcon_loss,
    supcon_loss_low_rank,
)

CONFIG_KEYS = (
    "batch_size",
    "dim",
    "clusters",
    "hidden_size",
    "threads",
    "device",
)


def terms(model, x, eps):
    """Name -> callable running one term forward + backward on ``x``."""

    def aux(inputs):
        with model.frozen_bn_stats():
            return model(inputs)

    def clean_forward():
        return model(x, return_hidden=True)

    def vat():
        logits = aux(x).detach()
        vat_loss(aux, x, eps, logits=logits).backward()

    def mixup():
        logits = aux(x).detach()
        virtual_mixup_loss(aux, x, logits=logits).backward()

    def supcon_direct():
        logits = model(x)
        loss = supcon_loss(logits, logits.detach().argmax(dim=1))
        loss.backward()
        return float(loss.detach())

    def supcon_low_rank():
        logits, hidden = model(x, return_hidden=True)
        out = model.output
        loss = supcon_loss_low_rank(
            hidden, out.weight, out.bias, logits.detach().argmax(dim=1)
        )
        loss.backward()
        return float(loss.detach())

    def clean_backward_only():
        logits = model(x)
        t0 = time.perf_counter()
        logits.sum().backward()
        return time.perf_counter() - t0

    return {
        "clean forward": clean_forward,
        "clean backward": clean_backward_only,
        "VAT (fwd+bwd)": vat,
        "mixup (fwd+bwd)": mixup,
        "SupCon direct (fwd+bwd)": supcon_direct,
        "SupCon low-rank (fwd+bwd)": supcon_low_rank,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=10240)
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--hidden-size", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            "clustering_step.json",
        ),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ClusteringMLP(args.dim, args.clusters, args.hidden_size)
    model.to(args.device).train()

    def batch(n):
        x = F.normalize(torch.randn(n, args.dim), dim=1).to(args.device)
        return x, torch.full((n,), 0.1, device=args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for fn in terms(model, *batch(256)).values():
        fn()
    model.zero_grad(set_to_none=True)
    rows, values = [], {}
    for name, fn in terms(model, *batch(args.batch_size)).items():
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        seconds = time.perf_counter() - t0
        if name == "clean backward":
            seconds = out
        elif name.startswith("SupCon"):
            values[name] = out
        model.zero_grad(set_to_none=True)
        rows.append({"term": name, "seconds": seconds})
        print(f"  {name}: {seconds:.2f} s", flush=True)
    direct, low = values.values()
    if abs(direct - low) > 1e-3 * max(1.0, abs(direct)):
        raise RuntimeError(
            f"SupCon direct {direct} and low-rank {low} disagree"
        )
    base = next(r for r in rows if r["term"].startswith("SupCon direct"))
    print(
        f"\none clustering step: batch {args.batch_size}, {args.dim}-"
        f"{args.hidden_size}-{args.hidden_size}-{args.clusters}, "
        f"{args.threads} threads, {args.device}"
    )
    print(f"{'term':>26} {'seconds':>9} {'direct / this':>13}")
    for r in rows:
        ratio = None
        if r["term"].startswith("SupCon"):
            ratio = base["seconds"] / r["seconds"]
        r["direct_supcon_over_this"] = ratio
        shown = "-" if ratio is None else f"{ratio:.2f}"
        print(f"{r['term']:>26} {r['seconds']:>9.2f} {shown:>13}")
    from speechbrain_ssv.utils.io import write_json

    write_json(
        args.out,
        {
            "config": {k: getattr(args, k) for k in CONFIG_KEYS}
            | {"torch": torch.__version__, "supcon_value": direct},
            "rows": rows,
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
