#!/usr/bin/env python3
"""Time, peak memory and FLOP utilisation of one SDPN training step.

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

One run times several *modes* of the same step at the same batch, each on
a freshly built brain with the same seed:

* ``fp32-eager``: PyTorch's fp32 with the TF32 flags as they stand after
  ``import speechbrain`` (its ``allow_tf32`` quirk turns matmul TF32 on;
  ``SB_DISABLE_QUIRKS=allow_tf32`` leaves torch's own defaults: cuDNN
  TF32 on, matmul TF32 off). The flags are printed and saved.
* ``bf16-eager``: ``torch.autocast`` bf16, as SpeechBrain's
  ``--precision bf16`` runs it.
* ``bf16-compiled``: as ``bf16-eager`` with ``torch.compile`` of the student
  encoder and head, as SpeechBrain's ``--compile --compile_module_keys``
  does it (``Brain._compile``: mode ``default``, ``dynamic=False``). The
  compile happens in the untimed warm-up steps.

Any ``{fp32,fp16,bf16}-{eager,compiled}`` is accepted. For each mode: seconds
per step, utterances (not views) per second, peak GPU memory
(``max_memory_allocated`` over the timed steps) or peak RSS of the process
on CPU, and model FLOPs utilisation (MFU): the FLOPs of one step are counted
once per config with ``FlopCounterMode`` on an fp32 eager step (forward and
backward of the student, forward of the teacher, features, loss), and MFU
is the achieved FLOP/s over the device's dense peak for the mode's math
(bf16/fp16; fp32 modes use the TF32 peak when cuDNN TF32 is on, since the
convolutions carry almost all the FLOPs). Peaks come from a small table
keyed by GPU name, or ``--peak_tflops``; otherwise MFU is ``unknown``.

On CPU a batch of 96 takes minutes per step: pass ``--batch`` (e.g. 8) to
measure a smaller batch (throughput is per utterance), or ``--tiny`` for a
smoke check (tiny channels, 1 s + 0.5 s views; ~10 s eager). Compiling even
the tiny model with inductor's C++ backend takes ~4-5 min on 2 shared cores,
so the CPU smoke check leaves the compiled mode out with ``--modes``.

Usage::

    python bench/bench_sdpn_step.py --tiny --batch 4 --steps 3 --warmup 1 \
        --threads 1 --modes fp32-eager,bf16-eager --out /tmp/sdpn_smoke.json
    python bench/bench_sdpn_step.py --device cuda --configs paper --batch 96 \\
        --out bench/results/sdpn_step_gpu.json

Prints a markdown table and writes ``--out`` (default
``bench/results/sdpn_step.json``) after every mode, so a run cut short keeps
the modes it finished.

Authors
 * speechbrain-ssv developers 2026
"""

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
import traceback

import speechbrain
import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization
from torch.utils.flop_counter import FlopCounterMode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from peak_memory import reset_peak, rss_kb  # noqa: E402

from speechbrain_ssv.brains.sdpn import SDPNBrain  # noqa: E402
from speechbrain_ssv.lobes.heads import ProjectionHead, Prototypes  # noqa: E402
from speechbrain_ssv.lobes.teacher import EMATeacher  # noqa: E402
from speechbrain_ssv.utils.io import write_json  # noqa: E402

CONFIGS = {
    "paper": {"label": "paper (C=1024, 80 mels)", "n_mels": 80, "channels": [1024] * 4 + [3072], "att": 128,
              "emb": 512, "hidden": 2048, "out": 256, "k": 1024, "global_s": 4.0, "local_s": 2.0},
    "minivox": {"label": "minivox (C=192, 60 mels)", "n_mels": 60, "channels": [192] * 4 + [576], "att": 64,
                "emb": 192, "hidden": 512, "out": 128, "k": 256, "global_s": 4.0, "local_s": 2.0},
    # Smoke check only: every code path of the step, at a size that runs
    # (and compiles) in seconds on a CPU.
    "tiny": {"label": "tiny (C=32, 24 mels)", "n_mels": 24, "channels": [32] * 4 + [96], "att": 16,
             "emb": 32, "hidden": 64, "out": 32, "k": 32, "global_s": 1.0, "local_s": 0.5},
}  # fmt: skip
N_LOCAL = 4
DEFAULT_MODES = "fp32-eager,bf16-eager,bf16-compiled"
STUDENT_KEYS = "embedding_model,projector"
TEACHER_KEYS = ("teacher_embedding_model", "teacher_projector")

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets, per math
# kind; fp16 equals bf16 on these parts. Matched on the name torch reports
# (e.g. "NVIDIA H100 80GB HBM3"); the first entry whose tokens all occur
# wins, so the PCIe H100 (lower clocks and power) precedes the SXM one.
PEAK_TFLOPS = [
    (("H200",), {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),
    (("H100", "PCIe"), {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    (("H100",), {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),
    (("A100",), {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]


def build_brain(
    cfg, device, precision, save_dir, compile_keys=(), compile_mode="default"
):  # noqa: E501
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
    compile_keys : sequence of str
        Modules to ``torch.compile`` through SpeechBrain's own
        ``Brain._compile`` (empty: eager).

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
        "method": "sdpn", "n_global": 1, "n_local": N_LOCAL,
        "teacher": EMATeacher([student, s_head], [t_enc, t_head]),
        "ema_base": 0.996, "ema_final": 1.0, "total_steps": 426450, "teacher_temp": 0.04, "sharpen_temp": 1.0,
        "student_temp": 0.1, "sinkhorn_iters": 3, "memax_weight": 1.0, "koleo_weight": 0.1,
        "koleo_reduction": "sum", "pair_reduction": "mean", "grad_clip_per_tensor": 3.0,
        "collapse_min_perplexity": 2.0, "collapse_min_std": 0.05, "spec_augment_prob": 0.2,
        "time_mask": SpectrogramDrop(0, 10, 1, 1, dim=1), "freq_mask": SpectrogramDrop(0, 6, 1, 1, dim=2),
        "clip_prototypes": False, "augment_global": False, "wav_augment": None,
    }  # fmt: skip
    run_opts = {"device": device, "precision": precision, "noprogressbar": True}
    if compile_keys:
        # SpeechBrain's defaults, spelled out: a static-shape graph (every
        # batch of the benchmark has the same shape) and no autotuning.
        run_opts.update(compile=True, compile_module_keys=list(compile_keys),
                        compile_mode=compile_mode, compile_using_fullgraph=False,
                        compile_using_dynamic_shape_tracing=False)  # fmt: skip
    brain = SDPNBrain(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(
            p, lr=0.4, momentum=0.9, weight_decay=5e-5
        ),
        hparams=hp,
        run_opts=run_opts,
    )
    if compile_keys:
        # What ``on_fit_start`` does before building the optimizer. The EMA
        # teacher keeps the uncompiled student: the compiled wrapper shares
        # its parameters, so the EMA update is unchanged.
        brain._compile()
        wrapped = torch._dynamo.eval_frame.OptimizedModule
        failed = [k for k in compile_keys if not isinstance(brain.modules[k], wrapped)]  # fmt: skip
        if failed:
            # Brain._compile only logs a failure and runs the module eager:
            # a "compiled" row must not silently time eager code.
            raise RuntimeError(f"torch.compile failed for {failed}")
    brain.init_optimizers()
    brain.modules.train()
    return brain


def make_batch(batch_size, global_s=4.0, local_s=2.0, n_local=N_LOCAL, sr=16000):  # fmt: skip
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


def parse_mode(mode):
    """Split ``"bf16-compiled"`` into ``("bf16", True)``.

    Arguments
    ---------
    mode : str
        ``{fp32,fp16,bf16}-{eager,compiled}``.

    Returns
    -------
    tuple
        Precision and whether the student is compiled.
    """
    precision, _, kind = mode.partition("-")
    if precision not in ("fp32", "fp16", "bf16") or kind not in (
        "eager",
        "compiled",
    ):
        raise ValueError(
            f"mode {mode!r}: expected {{fp32,fp16,bf16}}-{{eager,compiled}}"
        )
    return precision, kind == "compiled"


def tf32_flags():
    """The TF32 switches in effect (SpeechBrain's import may change them).

    Returns
    -------
    dict
        ``cudnn_conv`` and ``cuda_matmul``: whether fp32 convolutions and
        matmuls may run in TF32; ``float32_matmul_precision``.
    """
    return {
        "cudnn_conv": bool(torch.backends.cudnn.allow_tf32),
        "cuda_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def device_name(device):
    """Human-readable name of ``device``.

    Arguments
    ---------
    device : str
        Torch device.

    Returns
    -------
    str
        GPU name, or the CPU's architecture and core count.
    """
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.machine()} ({os.cpu_count()} cores)"


def peak_tflops(name, precision, override=None):
    """Dense peak of ``name`` for ``precision``'s math.

    Arguments
    ---------
    name : str
        From :func:`device_name`.
    precision : str
        The mode's precision.
    override : float, optional
        ``--peak_tflops``: used as is for every mode.

    Returns
    -------
    tuple
        ``(TFLOP/s or None, kind)``; kind is ``bf16``, ``tf32``, ``fp32``
        or ``given``.
    """
    if override:
        return override, "given"
    if precision in ("bf16", "fp16"):
        kind = "bf16"
    else:
        # ECAPA's FLOPs are nearly all Conv1d, which cuDNN runs in TF32
        # when allowed; the few Linear layers follow the matmul flag.
        kind = "tf32" if tf32_flags()["cudnn_conv"] else "fp32"
    for tokens, peaks in PEAK_TFLOPS:
        if all(t in name for t in tokens):
            return peaks[kind], kind
    return None, kind


def count_flops(cfg, args, batch):
    """FLOPs of one fp32 eager training step, split by part.

    A separate, untimed brain runs one ``fit_batch`` under
    ``FlopCounterMode`` (matmul/conv/attention FLOPs, multiply-add = 2;
    the STFT and elementwise ops are not counted). Forward hooks read the
    running total around the teacher and student networks.

    Arguments
    ---------
    cfg : dict
        Module sizes.
    args : argparse.Namespace
        Command-line options.
    batch : PaddedBatch
        The benchmark's batch.

    Returns
    -------
    dict
        ``total``, ``teacher_fwd``, ``student_fwd`` and ``rest`` (student
        backward, features, prototypes and loss) in FLOPs per step.
    """
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        brain = build_brain(cfg, args.device, "fp32", tmp)
        counter = FlopCounterMode(display=False)
        parts = {"teacher_fwd": 0, "student_fwd": 0}
        start = {}
        handles = []
        for key in STUDENT_KEYS.split(",") + list(TEACHER_KEYS):
            part = "teacher_fwd" if key in TEACHER_KEYS else "student_fwd"

            def pre(mod, inp, key=key):
                start[key] = counter.get_total_flops()

            def post(mod, inp, out, key=key, part=part):
                parts[part] += counter.get_total_flops() - start[key]

            module = brain.modules[key]
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        with counter:
            brain.fit_batch(batch)
        for h in handles:
            h.remove()
        total = counter.get_total_flops()
        del brain
    release_memory(args.device)
    return dict(parts, total=total, rest=total - sum(parts.values()))


def release_memory(device):
    """Drop what the previous brain left, so each mode starts clean.

    Arguments
    ---------
    device : str
        Torch device.
    """
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def timed_step(brain, batch, cuda):
    """Wall time of one ``fit_batch``, device work included.

    Arguments
    ---------
    brain : SDPNBrain
        The brain.
    batch : PaddedBatch
        Its batch (on the host, as a data loader gives it).
    cuda : bool
        Whether to synchronise the GPU around the step.

    Returns
    -------
    float
        Seconds.
    """
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    brain.fit_batch(batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def time_mode(cfg, mode, args, batch):
    """Seconds per step and peak memory of one configuration and mode.

    Arguments
    ---------
    cfg : dict
        Module sizes.
    mode : str
        ``{precision}-{eager|compiled}``.
    args : argparse.Namespace
        Command-line options.
    batch : PaddedBatch
        The benchmark's batch.

    Returns
    -------
    dict
        Figures for the table.
    """
    precision, compiled = parse_mode(mode)
    keys = args.compile_keys.split(",") if compiled else ()
    cuda = args.device.startswith("cuda")
    torch.manual_seed(0)
    if compiled:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
    with tempfile.TemporaryDirectory() as tmp:
        brain = build_brain(
            cfg, args.device, precision, tmp, keys, args.compile_mode
        )

        # Warm-up: cuDNN/cuBLAS heuristics, the caching allocator and, in
        # compiled modes, the forward and backward graph compiles.
        warm = [timed_step(brain, batch, cuda) for _ in range(args.warmup)]
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak()
        times = [timed_step(brain, batch, cuda) for _ in range(args.steps)]
        sec = sum(times) / len(times)
        row = {
            "mode": mode,
            "precision": precision,
            "compiled_modules": list(keys),
            "s_per_step": sec,
            "s_per_step_min": min(times),
            "utt_per_s": args.batch_size / sec,
            "warmup_s": sum(warm),
            "student_params_M": sum(
                p.numel() for p in brain.modules.embedding_model.parameters()
            )
            / 1e6,
        }
        if cuda:
            row["peak_mem_MB"] = torch.cuda.max_memory_allocated() / 2**20
            row["peak_mem_kind"] = "GPU max_memory_allocated"
        else:
            row["peak_mem_MB"] = rss_kb("VmHWM") / 1024
            row["peak_mem_kind"] = "process peak RSS"
        if compiled:
            counters = torch._dynamo.utils.counters
            row["graph_breaks"] = sum(counters["graph_break"].values())
            row["unique_graphs"] = counters["stats"]["unique_graphs"]
        del brain
    if compiled:
        torch._dynamo.reset()
    release_memory(args.device)
    return row


def fmt(value, spec, missing="unknown"):
    """``format(value, spec)``, or ``missing`` for None.

    Arguments
    ---------
    value : float or None
        The figure.
    spec : str
        Format spec.
    missing : str
        Text for None.

    Returns
    -------
    str
        The cell.
    """
    return missing if value is None else format(value, spec)


def print_table(report):
    """Markdown table of every row, then the speed-ups.

    Arguments
    ---------
    report : dict
        What is written to ``--out``.
    """
    rows = report["rows"]
    mem = (
        "peak GPU MB" if report["device"].startswith("cuda") else "peak RSS MB"
    )
    print(f"SDPN step on {report['device_name']} ({report['device']}), torch {report['torch']}, "
          f"batch {report['batch_size']} utterances, {report['threads']} threads, "
          f"{report['warmup']} warm-up + {report['steps']} timed steps; TF32 {report['tf32']}")  # fmt: skip
    for name, fl in report["flops"].items():
        per = 1e9 * report["batch_size"]
        print(f"{CONFIGS[name]['label']}: views {report['views'][name]}; "
              f"{fl['total'] / per:.3g} GFLOP/utt/step = teacher fwd {fl['teacher_fwd'] / per:.3g} "
              f"+ student fwd {fl['student_fwd'] / per:.3g} + rest (student bwd, features, loss) "
              f"{fl['rest'] / per:.3g}")  # fmt: skip
    print()
    head = ["config", "mode", "s/step", "utt/s", mem, "GFLOP/utt", "TFLOP/s", "peak TFLOP/s", "MFU", "warm-up s"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        if "error" in r:
            print(f"| {r['config']} | {r['mode']} | failed: {r['error']} |")
            continue
        peak = fmt(r["peak_tflops"], ".1f")
        if r["peak_tflops"] is not None:
            peak += f" ({r['peak_kind']})"
        mfu = fmt(None if r["mfu"] is None else 100 * r["mfu"], ".3g")
        mfu += "%" if r["mfu"] is not None else ""
        cells = [r["config"], r["mode"], f"{r['s_per_step']:.3f}", f"{r['utt_per_s']:.1f}",
                 f"{r['peak_mem_MB']:.0f}", fmt(r["gflop_per_utt"], ".3g"), fmt(r["achieved_tflops"], ".3g"),
                 peak, mfu, f"{r['warmup_s']:.1f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print()
    for name, ratio in report["speedup_bf16_compiled_vs_fp32_eager"].items():
        print(
            f"{CONFIGS[name]['label']}: bf16-compiled / fp32-eager utt/s = {ratio:.2f}x"
        )
    for mode, ratio in report["paper_time_vs_minivox"].items():
        print(f"{mode}: paper / minivox s/step = {ratio:.2f}x")
    for r in rows:
        if r.get("graph_breaks"):
            print(f"{r['config']} {r['mode']}: {r['graph_breaks']} graph breaks, "
                  f"{r['unique_graphs']} graphs compiled")  # fmt: skip


def summarise(report):
    """Fill the cross-row ratios of ``report`` in place.

    Arguments
    ---------
    report : dict
        With ``rows``.
    """
    ok = {(r["config"], r["mode"]): r for r in report["rows"] if "error" not in r}  # fmt: skip
    report["speedup_bf16_compiled_vs_fp32_eager"] = {
        c: ok[(c, "bf16-compiled")]["utt_per_s"] / ok[(c, "fp32-eager")]["utt_per_s"]
        for c in report["configs"]
        if (c, "bf16-compiled") in ok and (c, "fp32-eager") in ok
    }  # fmt: skip
    report["paper_time_vs_minivox"] = {
        m: ok[("paper", m)]["s_per_step"] / ok[("minivox", m)]["s_per_step"]
        for m in report["modes"]
        if ("paper", m) in ok and ("minivox", m) in ok
    }


def main():
    """Run the benchmark, print a table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", "--batch_size", dest="batch_size", type=int, default=None,
                        help="utterances per step (paper: 96 per GPU; default 96, 8 with --tiny)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (compiled modes compile here)")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default=None,
                        help=f"comma-separated {{fp32,fp16,bf16}}-{{eager,compiled}} (default {DEFAULT_MODES})")  # fmt: skip
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"],
                        help="legacy: without --modes, time only PRECISION-eager")  # fmt: skip
    parser.add_argument("--configs", default="paper,minivox",
                        help=f"comma-separated subset of {','.join(CONFIGS)}")  # fmt: skip
    parser.add_argument("--tiny", action="store_true",
                        help="smoke check: the tiny config only (C=32, 1 s + 0.5 s views)")  # fmt: skip
    parser.add_argument(
        "--compile_mode",
        default="default",
        help="torch.compile mode (SpeechBrain's --compile_mode): "
        "default, reduce-overhead (CUDA graphs), max-autotune",
    )
    parser.add_argument("--compile_keys", default=STUDENT_KEYS,
                        help="modules compiled in the *-compiled modes")  # fmt: skip
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="device peak TFLOP/s for MFU, for every mode (default: table by GPU name)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "sdpn_step.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = ["tiny"] if args.tiny else args.configs.split(",")
    if args.batch_size is None:
        args.batch_size = 8 if args.tiny else 96
    if args.modes is None:
        args.modes = f"{args.precision}-eager" if args.precision else DEFAULT_MODES  # fmt: skip
    modes = args.modes.split(",")
    for mode in modes:
        parse_mode(mode)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {list(CONFIGS)}")
    name = device_name(args.device)
    report = {
        "device": args.device, "device_name": name, "torch": torch.__version__,
        "speechbrain": speechbrain.__version__, "cuda": torch.version.cuda, "tf32": tf32_flags(),
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
        "modes": modes, "configs": configs, "compile_keys": args.compile_keys.split(","), "compile_mode": args.compile_mode,
        "config": {c: CONFIGS[c] for c in configs}, "flops": {}, "rows": [],
        "views": {c: f"1 x {CONFIGS[c]['global_s']:g} s global + {N_LOCAL} x {CONFIGS[c]['local_s']:g} s local"
                  for c in configs},
    }  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for cname in configs:
        cfg = CONFIGS[cname]
        torch.manual_seed(0)
        batch = make_batch(args.batch_size, cfg["global_s"], cfg["local_s"])
        try:
            flops = count_flops(cfg, args, batch)
            report["flops"][cname] = flops
        except Exception:
            # The timings are still worth having; MFU is then unknown.
            traceback.print_exc()
            flops = None
            release_memory(args.device)
        for mode in modes:
            try:
                row = time_mode(cfg, mode, args, batch)
            except Exception as e:
                # Keep the other modes' figures (a compile failure must not
                # cost the whole run); the traceback goes to stderr.
                traceback.print_exc()
                row = {"mode": mode, "error": f"{type(e).__name__}: {e}"[:200]}
                release_memory(args.device)
            row["config"] = cname
            if "error" not in row:
                peak, kind = peak_tflops(
                    name, row["precision"], args.peak_tflops
                )
                total = flops["total"] if flops else None
                achieved = total and total / row["s_per_step"] / 1e12
                row.update(gflop_per_utt=total and total / args.batch_size / 1e9,
                           achieved_tflops=achieved, peak_tflops=peak, peak_kind=kind,
                           mfu=None if None in (peak, achieved) else achieved / peak)  # fmt: skip
            report["rows"].append(row)
            summarise(report)
            # After every mode: a run cut short keeps what it finished.
            write_json(args.out, report)
    print_table(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
