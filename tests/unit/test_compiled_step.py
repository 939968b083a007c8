"""A training step compiled through SpeechBrain's own run options
(``--compile`` with ``compile_module_keys``, Brain._compile) gives the
eager step's loss and update, for the Brain of every recipe.

Each case builds the same tiny Brain twice from the same seed, runs
``fit_batch`` on the same batch eagerly and compiled, and compares the
losses (rtol 1e-4), the updates of every module (loosely: they carry the
gradients) and the state-dict names seen through ``unwrap`` (checkpoints,
exports and the weight fingerprint must not see torch.compile's
``_orig_mod.`` prefix). The SDPN/DINO cases take two steps and also check
that the teacher's EMA update reaches its compiled copy.

Inductor's C++ code generation costs minutes on a small CPU (before its
cache in /tmp is warm), so every Brain is compiled with the ``aot_eager``
backend: the same Dynamo capture and AOTAutograd graphs (where guards,
graph breaks, functionalised BatchNorm statistics and module wrappers
break things) without code generation. Two cases also run the default
``inductor`` backend; they are marked slow (about 80 s each with a cold
cache, 12 s warm, on two busy CPU cores).
"""

import functools

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import MFCC, Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.processing.features import InputNormalization

from speechbrain_ssv.brains.base import unwrap, weights_fingerprint
from speechbrain_ssv.brains.club import DisentangleBrain
from speechbrain_ssv.brains.mixap import MixAPBrain
from speechbrain_ssv.brains.pseudolabel import PseudoLabelBrain
from speechbrain_ssv.brains.sdpn import SDPNBrain
from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.brains.vae import VAEBrain
from speechbrain_ssv.lobes.club import CategoricalCLUB, GaussianCLUB
from speechbrain_ssv.lobes.decoupling import DecouplingBlock
from speechbrain_ssv.lobes.heads import (
    AngularScale,
    Center,
    ProjectionHead,
    Prototypes,
)
from speechbrain_ssv.lobes.margins import AAMSoftmax
from speechbrain_ssv.lobes.mfa_conformer import MFAConformer
from speechbrain_ssv.lobes.teacher import EMATeacher
from speechbrain_ssv.lobes.vae import ConvVAE

N_MELS, EMB, N_SPK, B = 20, 16, 3, 4
SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
AAM = functools.partial(LogSoftmaxWrapper, AdditiveAngularMargin(0.2, 30))


def _ecapa():
    # One SE-Res2Net block of scale 2: the fewest Python-level ops (Dynamo
    # traces each), every layer type of the recipes' ECAPA.
    return ECAPA_TDNN(
        N_MELS,
        channels=[16, 16, 48],
        kernel_sizes=[5, 3, 1],
        dilations=[1, 2, 1],
        groups=[1, 1, 1],
        attention_channels=8,
        res2net_scale=2,
        se_channels=8,
        lin_neurons=EMB,
    )


def _front():
    return {
        "compute_features": Fbank(n_mels=N_MELS),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
    }


def _labelled_batch(n_samples=3200, pairs=False):
    g = torch.Generator().manual_seed(1)
    return PaddedBatch(
        [
            {
                "id": f"u{i}",
                "sig": 0.1 * torch.randn(n_samples, generator=g),
                # Speaker pairs [a, a, b, b] (the CLUB recipe's sampler).
                "spk_id_encoded": torch.tensor([i // 2 if pairs else i % 3]),
                "device_encoded": torch.tensor([i % 2]),
            }
            for i in range(B)
        ]
    )


# ------------------------------------------------------------------ brains
# Each builder returns (brain class, modules, hparams, batch,
# compile_module_keys, steps); _train seeds before calling it.


def _supervised():
    modules = {
        **_front(),
        "embedding_model": _ecapa(),
        "classifier": Classifier(EMB, out_neurons=N_SPK),
    }
    hparams = {"compute_cost": AAM(), "wav_augment": None}
    keys = ["embedding_model", "classifier"]
    return SupervisedBrain, modules, hparams, _labelled_batch(), keys, 1


def _pseudolabel():
    modules = {
        **_front(),
        "embedding_model": _ecapa(),
        "classifier": Classifier(EMB, out_neurons=N_SPK),
        "margin_loss": AAMSoftmax(0.1, 30.0),
    }
    hparams = {"wav_augment": None}
    keys = ["embedding_model", "classifier"]
    return PseudoLabelBrain, modules, hparams, _labelled_batch(), keys, 1


def _sdpn(method):
    n_logits = 12 if method == "dino" else None
    student, t_enc = _ecapa(), _ecapa()
    head = ProjectionHead(EMB, 16, 8, n_logits=n_logits)
    t_head = ProjectionHead(EMB, 16, 8, n_logits=n_logits)
    modules = {
        **_front(),
        "embedding_model": student,
        "projector": head,
        "teacher_embedding_model": t_enc,
        "teacher_projector": t_head,
    }
    if method == "sdpn":
        modules["prototypes"] = Prototypes(12, 8)
    else:
        modules["center"] = Center(12)
    hparams = {
        "method": method,
        "n_global": 1,
        "n_local": 2,
        "student_global_views": False,
        "teacher": EMATeacher([student, head], [t_enc, t_head]),
        # A large EMA step, so that the second step's teacher visibly
        # depends on the first update.
        "ema_base": 0.5,
        "ema_final": 0.5,
        "total_steps": 10,
        "teacher_temp": 0.04,
        "sharpen_temp": 1.0,
        "student_temp": 0.1,
        "sinkhorn_iters": 3,
        "memax_weight": 1.0,
        "koleo_weight": 0.1,
        "koleo_reduction": "sum",
        "pair_reduction": "mean",
        "warmup_teacher_temp": 0.02,
        "warmup_teacher_temp_steps": 4,
        "freeze_last_layer_steps": 0,
        "grad_clip_per_tensor": 3.0,
        # Every SDPN/DINO yaml lists these (null: off).
        "wav_augment": None,
        "augment_global": False,
        "time_mask": None,
        "freq_mask": None,
        "spec_augment_prob": 0.2,
        "clip_prototypes": False,
    }
    g = torch.Generator().manual_seed(1)
    batch = PaddedBatch(
        [
            {
                "id": f"u{i}",
                "global0": 0.1 * torch.randn(4800, generator=g),
                "local0": 0.1 * torch.randn(3200, generator=g),
                "local1": 0.1 * torch.randn(3200, generator=g),
            }
            for i in range(B)
        ]
    )
    keys = [
        "embedding_model",
        "projector",
        "teacher_embedding_model",
        "teacher_projector",
    ]
    return SDPNBrain, modules, hparams, batch, keys, 2


def _mixap():
    modules = {
        "compute_features": MFCC(
            n_mfcc=N_MELS, n_mels=N_MELS, deltas=False, context=False
        ),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": _ecapa(),
        "ap_scale": AngularScale(),
    }
    hparams = {
        "method": "imix",
        "mix_alpha": 1.0,
        "per_sample_lambda": True,
        "fold_lambda": False,
        "n_frames": 20,
        # The unmixed queries ride in the same encoder pass.
        "ap_weight": 0.5,
        "time_mask": None,
        "ceps_mask": None,
        "wav_augment": None,
        "gather_negatives": True,
    }
    g = torch.Generator().manual_seed(1)
    batch = PaddedBatch(
        [
            {
                "id": f"u{i}",
                "view0": 0.1 * torch.randn(3200, generator=g),
                "view1": 0.1 * torch.randn(3200, generator=g),
            }
            for i in range(B)
        ]
    )
    keys = ["embedding_model", "ap_scale"]
    return MixAPBrain, modules, hparams, batch, keys, 1


def _vae():
    modules = {
        "compute_features": MFCC(
            deltas=False, context=False, n_mels=N_MELS, n_mfcc=N_MELS
        ),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "vae": ConvVAE(
            n_feats=N_MELS, n_frames=30, latent_dim=8, channels=(4, 8)
        ),
    }
    hparams = {"kl_beta": 1.0, "recon_sigma": 1.0}
    batch = _labelled_batch(n_samples=29 * 160)
    return VAEBrain, modules, hparams, batch, ["vae"], 1


def _disentangle():
    modules = {
        **_front(),
        "embedding_model": MFAConformer(
            input_size=N_MELS,
            d_model=16,
            num_blocks=1,
            nhead=2,
            d_ffn=32,
            kernel_size=3,
            dropout=0.0,
            lin_neurons=EMB,
            attention_channels=8,
        ),
        "decoupling": DecouplingBlock(EMB, output_size=EMB),
        "spk_classifier": Classifier(EMB, out_neurons=N_SPK),
        "dev_classifier": Classifier(EMB, out_neurons=2),
        "ap_scale": AngularScale(),
        "club_s_d": GaussianCLUB(EMB, EMB, hidden=16),
        "club_d_ys": CategoricalCLUB(EMB, N_SPK, hidden=16),
        "club_s_yd": CategoricalCLUB(EMB, 2, hidden=16),
    }
    hparams = {
        "compute_cost": AAM(),
        "table1_row": 6,
        "estimator_opt_class": functools.partial(torch.optim.SGD, lr=0.01),
        "estimator_steps": 2,
        "loss_weights": None,
        "train_idle_estimators": True,
        "wav_augment": None,
    }
    keys = ["embedding_model", "decoupling", "spk_classifier", "dev_classifier"]
    batch = _labelled_batch(pairs=True)
    return DisentangleBrain, modules, hparams, batch, keys, 1


CASES = {
    "supervised": _supervised,
    "pseudolabel": _pseudolabel,
    "sdpn": functools.partial(_sdpn, "sdpn"),
    "dino": functools.partial(_sdpn, "dino"),
    "mixap": _mixap,
    "vae": _vae,
    "disentangle": _disentangle,
}


# ------------------------------------------------------------------ helpers
def _train(case, run_opts):
    """Build the case's Brain from seed 0, fit ``steps`` batches from seed 1.

    Returns
    -------
    tuple
        ``(brain, bare modules, keys, losses, initial state, initial
        fingerprint)``.
    """
    torch.manual_seed(0)
    cls, modules, hparams, batch, keys, steps = CASES[case]()
    brain = cls(
        modules=modules,
        opt_class=SGD,
        # No schedule: every case steps at its optimizer's rate.
        hparams={"lr_annealing": None, **hparams},
        run_opts={"device": "cpu", "noprogressbar": True, **run_opts},
    )
    brain.on_fit_start()  # compiles, then builds the optimizer
    init = _state(brain)
    fingerprint = weights_fingerprint(brain.modules.values())
    torch.manual_seed(1)  # the step's own draws (mixing, VAE noise)
    losses = [brain.fit_batch(batch) for _ in range(steps)]
    return brain, modules, keys, torch.stack(losses), init, fingerprint


def _state(brain):
    """Floating-point tensors of every module, by ``key.name``, as
    checkpoints and exports see them (through ``unwrap``)."""
    return {
        f"{key}.{name}": t.detach().clone()
        for key, module in brain.modules.items()
        for name, t in unwrap(module).state_dict().items()
        if t.is_floating_point()
    }


PARAMS = [pytest.param(case, "aot_eager", id=case) for case in CASES] + [
    pytest.param(
        case, "inductor", id=f"{case}-inductor", marks=pytest.mark.slow
    )
    for case in ("supervised", "sdpn")
]


@pytest.mark.parametrize("case,backend", PARAMS)
def test_compiled_step_matches_eager(case, backend, monkeypatch):
    from torch._dynamo.testing import CompileCounterWithBackend

    # A fresh Dynamo cache per case: no reuse of another case's graphs and
    # no silent fall-back to eager after the recompile limit.
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(backend)
    # Brain._compile calls torch.compile(module, mode=..., dynamic=...);
    # the backend is the only thing added.
    monkeypatch.setattr(
        torch, "compile", functools.partial(torch.compile, backend=counter)
    )
    # Random ops inside an Inductor graph (the VAE's sampling) draw from
    # the eager generator, as they do in the eager run.
    with torch._inductor.config.patch(fallback_random=True):
        eager, _, keys, eager_losses, eager_init, eager_fp = _train(case, {})
        brain, bare, _, losses, init, fp = _train(
            case, {"compile": True, "compile_module_keys": keys}
        )

    # Only the named modules were compiled, and they really ran compiled.
    compiled = {
        k
        for k, m in brain.modules.items()
        if isinstance(m, torch._dynamo.eval_frame.OptimizedModule)
    }
    assert compiled == set(keys)
    assert counter.frame_count >= 1
    # Checkpoint/export/fingerprint names are those of the bare modules.
    assert init.keys() == eager_init.keys()
    assert fp == eager_fp
    for k in keys:
        assert unwrap(brain.modules[k]) is bare[k]

    torch.testing.assert_close(losses, eager_losses, rtol=1e-4, atol=1e-6)
    state, eager_state = _state(brain), _state(eager)
    stats = [n for n in eager_state if n.endswith(("_mean", "_var"))]
    for name in stats:
        torch.testing.assert_close(
            state[name], eager_state[name], rtol=1e-4, atol=1e-6
        )
    # The update carries the gradient. Some gradients are zero up to
    # rounding (a bias before a softmax over time or a BatchNorm) and their
    # rounding noise differs between kernels: each tensor is compared with
    # its own update plus a floor set by the update of the whole model.
    update = {n: state[n] - init[n] for n in state if n not in stats}
    eager_update = {n: eager_state[n] - eager_init[n] for n in update}
    scale = torch.cat([u.flatten() for u in eager_update.values()]).norm()
    assert scale > 0
    for name, expected in eager_update.items():
        err = float((update[name] - expected).norm())
        bound = float(1e-3 * expected.norm() + 1e-5 * scale)
        assert err <= bound, f"{name}: update differs by {err:.2e}"

    if case in ("sdpn", "dino"):
        _check_teacher_follows_ema(brain, init)


def _check_teacher_follows_ema(brain, init):
    """The EMA step wrote into the parameters the compiled teacher runs."""
    moved = [
        n
        for n in init
        if n.startswith("teacher_embedding_model.") and "running" not in n
    ]
    state = _state(brain)
    assert any(not torch.equal(state[n], init[n]) for n in moved)
    teacher = brain.modules.teacher_embedding_model
    feats = torch.randn(B, 31, N_MELS)
    lens = torch.ones(B)
    # Train mode and the training step's shapes: the graph of the step
    # runs again, no recompilation.
    with torch.no_grad():
        torch.testing.assert_close(
            teacher(feats, lens),
            unwrap(teacher)(feats, lens),
            rtol=1e-4,
            atol=1e-5,
        )


def test_unwrap_sees_through_compile_and_ddp():
    # SpeechBrain compiles first, then wraps for DDP / DataParallel.
    lin = torch.nn.Linear(2, 2)
    wrapped = torch.nn.DataParallel(torch.compile(lin))
    assert unwrap(wrapped) is lin
    assert list(unwrap(wrapped).state_dict()) == ["weight", "bias"]


def test_compiled_margin_loss_gives_the_same_loss():
    # --compile without compile_module_keys compiles every module, the
    # margin loss included.
    torch.manual_seed(0)
    cls, modules, hparams, batch, _, _ = _pseudolabel()
    brain = cls(modules=modules, hparams=hparams, run_opts={"device": "cpu"})
    with torch.no_grad():
        pred = brain.compute_forward(batch, sb.Stage.VALID)
        labels = batch.spk_id_encoded[0]
        plain = brain.classification_loss(pred[0], labels, pred[1], pred[2])
        brain.modules["margin_loss"] = torch.compile(
            modules["margin_loss"], backend="eager"
        )
        compiled = brain.classification_loss(pred[0], labels, pred[1], pred[2])
    assert torch.allclose(compiled, plain)
