#!/usr/bin/env python3
"""Figs. 5 and 6 of Kang, Alam and Fathan (AAAI 2022 workshop): i-mix and
l-mix samples of the same pairs of training segments at the same lambda,
and their Euclidean distance from the line through each pair in the MFCC
supervector space.

i-mix samples (``lam X1 + (1 - lam) X2`` on the normalised MFCCs) lie on
that line by construction (distance ~0); l-mix samples (the decoded mixture
of the VAE's latent means, Eq. 6) need not.

Usage (after ``train_vae.py``)::

    python recipes/VoxCeleb/MixAP/plot_mixing.py \
        --vae results/vae_minivox/1986/vae.ckpt \
        --hparams recipes/VoxCeleb/MixAP/hparams/vae_minivox.yaml \
        --data_folder data/minivox --out results/vae_minivox/1986/mixing

Writes ``fig5_mixtures.png``, ``fig6_line_distances.png`` and
``mixing_distances.json`` (mean / median distances) to ``--out``. The
segments are random crops of the training manifest (``--manifest``, or the
one prepared from ``--data_folder`` into ``<out>/save``).

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import sys

import torch

from speechbrain_ssv.brains.vae import load_exported_vae, segment_features
from speechbrain_ssv.data.pipelines import make_unlabelled_dataset
from speechbrain_ssv.eval.mixing import (
    distance_from_line,
    plot_line_distances,
    plot_mixtures,
)
from speechbrain_ssv.losses.common import mix, random_partner, sample_lambda
from speechbrain_ssv.recipe_utils import prepare_voxceleb_data
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.io import write_json

CHUNK = 64  # segments per forward pass


def parse_args(argv):
    """Command line of the script.

    Arguments
    ---------
    argv : list
        ``sys.argv[1:]``.

    Returns
    -------
    argparse.Namespace
        The options.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", required=True, help="exported vae.ckpt")
    parser.add_argument(
        "--hparams",
        required=True,
        help="the yaml the VAE was trained with (features, normalisation, VAE)",
    )
    parser.add_argument(
        "--data_folder", help="VoxCeleb-layout data (default: the yaml's)"
    )
    parser.add_argument(
        "--manifest", help="an existing train.csv (skips the preparation)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1.0, help="Beta(a, a)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs {args.pairs}: expected at least 1")
    return args


def load_segments(hparams, manifest, n, device, generator):
    """``n`` random crops of different utterances, as the VAE's input.

    Arguments
    ---------
    hparams : dict
        Loaded VAE hparams (``segment_seconds``, ``sample_rate``,
        ``compute_features``, ``mean_var_norm``, ``n_frames``).
    manifest : str
        Training manifest.
    n : int
        Wanted number of segments (fewer if the manifest is smaller).
    device : str
        Where to compute the features.
    generator : torch.Generator
        Picks the utterances.

    Returns
    -------
    tuple
        ``(ids, feats [n, n_frames, n_feats])``.
    """
    ds = make_unlabelled_dataset(
        manifest,
        crop_seconds=hparams["segment_seconds"],
        sample_rate=hparams["sample_rate"],
    )
    if len(ds) < 2:
        raise ValueError(f"{manifest}: needs at least 2 utterances")
    order = torch.randperm(len(ds), generator=generator)[:n].tolist()
    ids, feats = [], []
    features = hparams["compute_features"].to(device)
    norm = hparams["mean_var_norm"].to(device)
    for start in range(0, len(order), CHUNK):
        items = [ds[i] for i in order[start : start + CHUNK]]
        wavs = torch.stack([it["sig"] for it in items]).to(device)
        lens = torch.ones(wavs.shape[0], device=device)
        with torch.no_grad():
            feats.append(
                segment_features(
                    features, norm, wavs, lens, hparams["n_frames"]
                )
            )
        ids += [it["id"] for it in items]
    return ids, torch.cat(feats)


@torch.no_grad()
def mixing_distances(vae, x, partner, lam):
    """i-mix and l-mix samples of every row with its partner, and their
    distances from the line through the two originals.

    Arguments
    ---------
    vae : speechbrain_ssv.lobes.vae.ConvVAE
        The trained VAE (eval mode).
    x : torch.Tensor
        ``[n, n_frames, n_feats]`` normalised features.
    partner : torch.Tensor
        ``[n]`` long.
    lam : torch.Tensor
        ``[n]``.

    Returns
    -------
    tuple
        ``(x_imix, x_lmix, d_imix, d_lmix)``.
    """
    x_imix = mix(x, partner, lam)
    mu = torch.cat([vae.encode(c)[0] for c in x.split(CHUNK)])
    z = mix(mu, partner, lam)
    x_lmix = torch.cat([vae.decode(c) for c in z.split(CHUNK)])
    a, b = x.flatten(1), x[partner].flatten(1)
    d_imix = distance_from_line(x_imix.flatten(1), a, b)
    d_lmix = distance_from_line(x_lmix.flatten(1), a, b)
    return x_imix, x_lmix, d_imix, d_lmix


def main(argv=None):
    """Run the analysis.

    Arguments
    ---------
    argv : list | None
        Command line (default ``sys.argv[1:]``).

    Returns
    -------
    dict
        The summary written to ``mixing_distances.json``.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {"output_folder": args.out}
    if args.data_folder:
        overrides["data_folder"] = args.data_folder
    hparams = load_hparams(args.hparams, overrides)
    manifest = args.manifest
    if not manifest:
        prepare_voxceleb_data(hparams)
        manifest = hparams["train_annotation"]

    vae = load_exported_vae(hparams["vae"], args.vae).to(args.device).eval()
    gen = torch.Generator().manual_seed(args.seed)
    # The crops' offsets come from torch's global generator (crop_pipeline).
    torch.manual_seed(args.seed)
    ids, x = load_segments(hparams, manifest, 2 * args.pairs, args.device, gen)
    n = x.shape[0]
    partner = random_partner(n, generator=gen).to(x.device)
    lam = sample_lambda(n, args.alpha, generator=gen).to(x.device)
    x_imix, x_lmix, d_imix, d_lmix = mixing_distances(vae, x, partner, lam)
    # One pair per segment of the first half: 2 * pairs segments -> pairs.
    keep = min(args.pairs, n)
    d_imix, d_lmix = d_imix[:keep], d_lmix[:keep]

    os.makedirs(args.out, exist_ok=True)
    # Fig. 5 shows a pair mixed at lambda ~ 0.5, as the paper's 0.503457.
    k = int((lam[:keep] - 0.5).abs().argmin())
    r = int(partner[k])
    plot_mixtures(
        x[k].cpu(), x[r].cpu(), x_imix[k].cpu(), x_lmix[k].cpu(), float(lam[k]),
        os.path.join(args.out, "fig5_mixtures.png"),
        title=f"{ids[k]} + {ids[r]}",
    )  # fmt: skip
    summary = plot_line_distances(
        d_imix.cpu(),
        d_lmix.cpu(),
        os.path.join(args.out, "fig6_line_distances.png"),
    )
    summary.update(
        {
            "alpha": args.alpha,
            "seed": args.seed,
            "vae": os.path.abspath(args.vae),
            "manifest": os.path.abspath(manifest),
            "fig5_pair": [ids[k], ids[r]],
            "fig5_lambda": float(lam[k]),
            "supervector_dim": int(x[0].numel()),
        }
    )
    write_json(os.path.join(args.out, "mixing_distances.json"), summary)
    print(
        f"{summary['n_pairs']} pairs: median distance from the line "
        f"i-mix {summary['imix_median']:.4g}, l-mix {summary['lmix_median']:.4g} "
        f"-> {args.out}"
    )
    return summary


if __name__ == "__main__":
    main()
