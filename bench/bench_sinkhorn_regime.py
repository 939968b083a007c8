#!/usr/bin/env python3
"""How sharp SDPN's Sinkhorn targets are for a batch size B and a number of
prototypes K (the "Sinkhorn regime").

Each of B teacher outputs sits at cosine ``--cosine`` to one of K random
unit prototypes (a different one per row where B <= K); the scores go
through :func:`speechbrain_ssv.losses.sdpn.sdpn_teacher_targets` with the
recipe's temperature and iterations. The table reports the mean top target
(how much of a row's mass lands on its own prototype) and the mean entropy
of the rows. Sinkhorn spreads each prototype's mass to B / K rows, so at a
small batch with many prototypes a confident teacher output is flattened.

Usage::

    python bench/bench_sinkhorn_regime.py --out results/bench/sinkhorn_regime.json

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import math
import os

import torch

from speechbrain_ssv.losses.sdpn import sdpn_teacher_targets
from speechbrain_ssv.utils.io import write_json

#: (label, B, K): the authors' config (batch 384 over their GPUs, 1024
#: prototypes) and minivox candidates at the minivox batch of 32.
CONFIGS = (
    ("authors: B 384, K 1024", 384, 1024),
    ("minivox: B 32, K 256 (before)", 32, 256),
    ("minivox: B 32, K 128", 32, 128),
    ("minivox: B 32, K 85 (K/B of the authors)", 32, 85),
    ("minivox: B 32, K 64", 32, 64),
)


def regime(batch, n_prototypes, cosine, dim, temperature, iters, seed):
    """Mean top target and mean row entropy after Sinkhorn.

    Arguments
    ---------
    batch, n_prototypes : int
        B and K.
    cosine : float
        Cosine of each teacher output to its own prototype.
    dim : int
        Embedding dimension.
    temperature : float
        Teacher softmax temperature.
    iters : int
        Sinkhorn iterations.
    seed : int
        Random seed.

    Returns
    -------
    tuple of float
        (mean top target, mean entropy in nats).

    Example
    -------
    >>> top, ent = regime(8, 4, 0.8, 16, 0.04, 3, 0)
    >>> 0 < top <= 1 and ent >= 0
    True
    """
    gen = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(
        torch.randn(n_prototypes, dim, generator=gen), dim=-1
    )
    own = torch.arange(batch) % n_prototypes
    noise = torch.randn(batch, dim, generator=gen)
    # Component of the noise orthogonal to the own prototype, at unit norm.
    noise = noise - (noise * protos[own]).sum(-1, keepdim=True) * protos[own]
    noise = torch.nn.functional.normalize(noise, dim=-1)
    out = cosine * protos[own] + math.sqrt(1 - cosine**2) * noise
    targets = sdpn_teacher_targets(
        out @ protos.t(), temperature=temperature, n_iters=iters
    )
    top = targets[torch.arange(batch), own].mean().item()
    entropy = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean().item()
    return top, entropy


def main():
    """Run every configuration and write the JSON and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cosine",
        type=float,
        default=0.8,
        help="cosine of a teacher output to its own prototype",
    )
    parser.add_argument(
        "--dim",
        type=int,
        default=256,
        help="embedding (projector output) dimension",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.04,
        help="teacher temperature (the recipes' teacher_temp)",
    )
    parser.add_argument(
        "--iters",
        type=int,
        default=3,
        help="Sinkhorn iterations (the recipes' sinkhorn_iters)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="random prototype sets averaged"
    )
    parser.add_argument(
        "--out",
        default="results/bench/sinkhorn_regime.json",
        help="JSON output file",
    )
    args = parser.parse_args()
    rows = []
    for label, b, k in CONFIGS:
        vals = [
            regime(b, k, args.cosine, args.dim, args.temperature, args.iters, s)
            for s in range(args.seeds)
        ]
        top = sum(v[0] for v in vals) / len(vals)
        ent = sum(v[1] for v in vals) / len(vals)
        rows.append(
            {
                "config": label,
                "B": b,
                "K": k,
                "K_over_B": k / b,
                "mean_top_target": top,
                "mean_entropy_nats": ent,
            }
        )
    print("| config | K/B | mean top target | mean entropy (nats) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['K_over_B']:.2f} | {r['mean_top_target']:.3f} | {r['mean_entropy_nats']:.2f} |"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
