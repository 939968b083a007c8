"""Benchmark: embedding-extraction throughput of ``extract_embeddings``.

An untrained small ECAPA-TDNN (channels 256x4 + 768, 192-d) behind
SpeechBrain's Fbank (80 mels) and sentence mean normalisation encodes
synthetic 16 kHz wavs of random durations written to a temporary folder.
The baseline is batch size 1 in the same run; the ratio is batch-16
throughput / batch-1 throughput.

Usage::

    python bench/bench_embeddings.py
    python bench/bench_embeddings.py --n-utts 32 --min-s 2 --max-s 6 --batch-sizes 1 16

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization

from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.utils.io import write_json, write_wav

SR = 16000


class SmallEcapaEncoder(torch.nn.Module):
    """Fbank -> sentence mean norm -> ECAPA-TDNN, as SpeechBrain's recipe."""

    def __init__(self):
        super().__init__()
        self.fbank = Fbank(n_mels=80)
        self.norm = InputNormalization(norm_type="sentence", std_norm=False)
        self.ecapa = ECAPA_TDNN(
            input_size=80, channels=[256, 256, 256, 256, 768], lin_neurons=192
        )

    def forward(self, wavs, lens):
        feats = self.norm(self.fbank(wavs), lens)
        return self.ecapa(feats, lens)


def make_wavs(folder, n_utts, min_s, max_s, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    total = 0.0
    for i in range(n_utts):
        dur = rng.uniform(min_s, max_s)
        n = int(dur * SR)
        path = os.path.join(folder, f"utt{i:04d}.wav")
        write_wav(path, 0.1 * rng.standard_normal(n), SR)
        items.append((f"utt{i:04d}", path))
        total += n / SR
    return items, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-utts", type=int, default=48)
    parser.add_argument("--min-s", type=float, default=2.0)
    parser.add_argument("--max-s", type=float, default=8.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(__file__), "results", "bench_embeddings.json"
        ),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SmallEcapaEncoder().to(args.device).eval()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        items, audio_s = make_wavs(tmp, args.n_utts, args.min_s, args.max_s)
        # Warm-up so one-off allocations are not charged to the first setting.
        extract_embeddings(
            model, items[:2], batch_size=2, device=args.device, progress=False
        )
        for bs in args.batch_sizes:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            emb = extract_embeddings(
                model, items, batch_size=bs, device=args.device, progress=False
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            assert len(emb) == len(items)
            rows.append(
                {
                    "batch_size": bs,
                    "seconds": wall,
                    "utts_per_s": len(items) / wall,
                    "x_realtime": audio_s / wall,
                }
            )
    base = rows[0]
    print(
        f"extract_embeddings, small ECAPA (untrained), {args.n_utts} utts, "
        f"{audio_s:.0f} s audio ({args.min_s}-{args.max_s} s each), "
        f"{args.device}, {args.threads} threads"
    )
    print(
        f"{'batch':>6} {'wall s':>8} {'utt/s':>8} {'x RT':>8} {'vs bs=' + str(base['batch_size']):>8}"
    )
    for r in rows:
        r["speedup_vs_first"] = r["utts_per_s"] / base["utts_per_s"]
        print(
            f"{r['batch_size']:>6} {r['seconds']:>8.2f} {r['utts_per_s']:>8.2f} "
            f"{r['x_realtime']:>8.1f} {r['speedup_vs_first']:>7.2f}x"
        )
    result = {
        "config": {
            "n_utts": args.n_utts,
            "audio_seconds": audio_s,
            "min_s": args.min_s,
            "max_s": args.max_s,
            "device": args.device,
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
