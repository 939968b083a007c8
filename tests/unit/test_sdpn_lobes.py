"""Heads, prototypes, the EMA teacher and SDPNBrain's training state."""

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_ssv.brains.sdpn import SDPNBrain
from speechbrain_ssv.lobes.heads import (
    Center,
    ProjectionHead,
    Prototypes,
    WeightNormLinear,
)
from speechbrain_ssv.lobes.teacher import EMATeacher, cosine_momentum


def test_projection_head_shape_bn_gelu_and_norm():
    head = ProjectionHead(512, 2048, 256)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == [
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Linear",
    ]
    assert [
        m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)
    ] == [2048, 2048, 256]
    z = head(torch.randn(4, 1, 512))
    assert z.shape == (4, 256)
    assert torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_weight_norm_last_layer_gain_frozen():
    layer = WeightNormLinear(8, 5, norm_last_layer=True)
    assert not layer.weight_g.requires_grad
    with torch.no_grad():
        layer.weight_v.mul_(7.0)
    x = torch.randn(3, 8)
    expected = x @ torch.nn.functional.normalize(layer.weight_v, dim=1).t()
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert WeightNormLinear(8, 5, norm_last_layer=False).weight_g.requires_grad


def test_prototypes_are_parameters_and_scores_are_cosines():
    protos = Prototypes(16, 8)
    assert [n for n, _ in protos.named_parameters()] == ["weight"]
    assert protos.weight.abs().max() <= 1 / 8**0.5
    z = torch.randn(3, 8)
    ref = (
        torch.nn.functional.normalize(z, dim=-1)
        @ torch.nn.functional.normalize(protos.weight, dim=-1).t()
    )
    assert torch.allclose(protos(z), ref)
    assert "weight" in protos.state_dict()
    fixed = Prototypes(8, 8, learnable=False)
    assert list(fixed.parameters()) == []
    with pytest.raises(ValueError):
        Prototypes(16, 8, learnable=False)


def test_ema_update_equals_formula():
    torch.manual_seed(0)
    student = [torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)]
    teacher = EMATeacher(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in teacher.parameters()]
    s_params = [p for m in student for p in m.parameters()]
    teacher.update(student, 0.9)
    for old, new, s in zip(before, teacher.parameters(), s_params):
        assert torch.allclose(new, 0.9 * old + 0.1 * s)
    teacher.update(student, 1.0)
    for old, new, s in zip(before, teacher.parameters(), s_params):
        assert torch.allclose(new, 0.9 * old + 0.1 * s)


def test_ema_teacher_initialised_from_given_modules():
    student = [torch.nn.Linear(3, 2)]
    given = [torch.nn.Linear(3, 2)]
    teacher = EMATeacher(student, given)
    assert teacher.networks[0] is given[0]
    assert torch.equal(given[0].weight, student[0].weight)
    assert not given[0].weight.requires_grad and student[0].weight.requires_grad
    with pytest.raises(ValueError):
        EMATeacher(student, [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)])


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 1000) == pytest.approx(0.996)
    assert cosine_momentum(1000, 1000) == pytest.approx(1.0)
    assert cosine_momentum(5000, 1000) == pytest.approx(1.0)
    values = [cosine_momentum(s, 100) for s in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_center_is_a_checkpointed_buffer():
    c = Center(3, momentum=0.5)
    c.update(torch.tensor([[2.0, 2.0, 2.0]]))
    assert torch.equal(c.state_dict()["center"], torch.ones(3))


# ---------------------------------------------------------------- the Brain
N_MELS, EMB, HEAD, K = 20, 16, 8, 12


def _ecapa():
    return ECAPA_TDNN(
        N_MELS,
        channels=[16, 16, 16, 16, 48],
        attention_channels=8,
        lin_neurons=EMB,
    )


def _make_brain(method, save_dir, seed, n_global=1, student_global=False):
    torch.manual_seed(seed)
    n_logits = K if method == "dino" else None
    student = _ecapa()
    head = ProjectionHead(EMB, 16, HEAD, n_logits=n_logits)
    t_enc, t_head = _ecapa(), ProjectionHead(EMB, 16, HEAD, n_logits=n_logits)
    modules = {
        "compute_features": Fbank(n_mels=N_MELS),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": student,
        "projector": head,
        "teacher_embedding_model": t_enc,
        "teacher_projector": t_head,
    }
    extra = Prototypes(K, HEAD) if method == "sdpn" else Center(K)
    modules["prototypes" if method == "sdpn" else "center"] = extra
    counter = EpochCounter(3)
    hp = {
        "method": method,
        "n_global": n_global,
        "n_local": 2,
        "student_global_views": student_global,
        "augment_global": False,
        # Every SDPN/DINO yaml lists these (null: no augmentation).
        "wav_augment": None,
        "time_mask": None,
        "freq_mask": None,
        "spec_augment_prob": 0.2,
        "clip_prototypes": False,
        "verify_every": 0,
        "verification_file": None,
        "verify_batch_size": 8,
        "teacher": EMATeacher([student, head], [t_enc, t_head]),
        "ema_base": 0.9,
        "ema_final": 1.0,
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
        "collapse_min_perplexity": 2.0,
        "collapse_min_std": 0.05,
        "lr_annealing": None,  # the optimizer's rate throughout
        "epoch_counter": counter,
    }
    ckpt = Checkpointer(
        save_dir,
        recoverables={
            **{k: v for k, v in modules.items() if k != "compute_features"},
            "counter": counter,
        },
    )
    brain = SDPNBrain(
        modules=modules,
        opt_class=lambda params: torch.optim.SGD(
            params, lr=0.05, momentum=0.9, weight_decay=5e-5
        ),
        hparams=hp,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=ckpt,
    )
    brain.on_fit_start()
    return brain


def _batch(seed=0, b=4, n_global=1):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(b):
        row = {"id": f"u{i}"}
        for j in range(n_global):
            row[f"global{j}"] = torch.randn(4800, generator=g)
        row["local0"] = torch.randn(3200, generator=g)
        row["local1"] = torch.randn(3200, generator=g)
        rows.append(row)
    return PaddedBatch(rows)


def _state(brain):
    state = {}
    for name, module in brain.modules.items():
        for k, v in module.state_dict().items():
            state[f"{name}.{k}"] = v.clone()
    for i, group in enumerate(brain.optimizer.state_dict()["state"].values()):
        for k, v in group.items():
            if torch.is_tensor(v):
                state[f"opt.{i}.{k}"] = v.clone()
    state["optimizer_step"] = torch.tensor(brain.optimizer_step)
    return state


@pytest.mark.parametrize("method", ["sdpn", "dino"])
def test_gradients_reach_student_and_prototypes_never_teacher(method, tmp_path):
    brain = _make_brain(method, tmp_path, seed=0)
    out = brain.compute_forward(_batch(), sb.Stage.TRAIN)
    loss = brain.compute_objectives(out, _batch(), sb.Stage.TRAIN)
    loss.backward()
    for key in ("embedding_model", "projector") + (
        ("prototypes",) if method == "sdpn" else ()
    ):
        grads = [
            p.grad for p in brain.modules[key].parameters() if p.requires_grad
        ]
        assert grads and all(g is not None for g in grads), key
        assert sum(float(g.abs().sum()) for g in grads) > 0, key
    for key in ("teacher_embedding_model", "teacher_projector"):
        assert all(
            not p.requires_grad and p.grad is None
            for p in brain.modules[key].parameters()
        ), key


def test_per_tensor_clipping_and_teacher_moves_by_ema(tmp_path):
    brain = _make_brain("sdpn", tmp_path, seed=0)
    for p in brain.modules.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 10.0)
    brain.clip_gradients()
    for name, p in brain.modules.named_parameters():
        if p.requires_grad and not name.startswith("prototypes"):
            assert float(p.grad.norm()) == pytest.approx(3.0, rel=1e-4), name
    assert float(brain.modules.prototypes.weight.grad.norm()) > 3.0
    # After one real step the teacher equals 0.9 * old + 0.1 * new student.
    brain.optimizer.zero_grad()
    t_before = [
        p.clone() for p in brain.modules.teacher_embedding_model.parameters()
    ]
    brain.fit_batch(_batch())
    for old, new, s in zip(
        t_before,
        brain.modules.teacher_embedding_model.parameters(),
        brain.modules.embedding_model.parameters(),
    ):
        assert torch.allclose(new, 0.9 * old + 0.1 * s, atol=1e-6)


@pytest.mark.parametrize("method", ["sdpn", "dino"])
def test_checkpoint_resume_continues_identically(method, tmp_path):
    brain = _make_brain(method, tmp_path / "ckpt", seed=0)
    for step in range(2):
        brain.fit_batch(_batch(step))
    brain.checkpointer.save_checkpoint()
    saved = _state(brain)
    # A fresh brain, initialised differently, recovers in on_fit_start.
    fresh = _make_brain(method, tmp_path / "ckpt", seed=123)
    restored = _state(fresh)
    assert saved.keys() == restored.keys()
    for key, value in saved.items():
        assert torch.equal(value, restored[key]), key
    assert any(k.startswith("teacher_embedding_model.") for k in saved)
    assert any(
        k.startswith("prototypes." if method == "sdpn" else "center.")
        for k in saved
    )
    assert fresh.optimizer_step == 2
    # Both continue with the same step.
    loss_a = brain.fit_batch(_batch(5))
    loss_b = fresh.fit_batch(_batch(5))
    assert torch.equal(loss_a, loss_b)
    after_a, after_b = _state(brain), _state(fresh)
    for key, value in after_a.items():
        assert torch.equal(value, after_b[key]), key


def test_collapse_warning(tmp_path, caplog):
    brain = _make_brain("sdpn", tmp_path, seed=0)
    emb = torch.ones(6, EMB)
    scores = torch.zeros(6, K)
    scores[:, 0] = 1.0
    brain._accumulate({"ce": torch.tensor(1.0)}, scores, 0.1, emb)
    stats = brain.collapse_stats()
    assert stats["proto_perplexity"] == pytest.approx(1.0)
    assert stats["emb_std"] == pytest.approx(0.0, abs=1e-6)
    with caplog.at_level("WARNING"):
        assert brain.warn_if_collapsed(stats, epoch=1)
    assert "COLLAPSE SUSPECTED" in caplog.text
    healthy = {"proto_perplexity": 10.0, "emb_std": 0.9}
    assert not brain.warn_if_collapsed(healthy, epoch=1)


def test_verification_uses_teacher_encoder(tmp_path):
    brain = _make_brain("sdpn", tmp_path, seed=0)
    assert brain.encoder_keys[-1] == "teacher_embedding_model"
    with torch.no_grad():
        for p in brain.modules.teacher_embedding_model.parameters():
            p.add_(1.0)
    wavs, lens = torch.randn(2, 4800), torch.ones(2)
    brain.modules.eval()
    got = brain.inference_encoder()(wavs, lens)
    feats = brain.modules.mean_var_norm(
        brain.modules.compute_features(wavs), lens
    )
    ref = brain.modules.teacher_embedding_model(feats, lens).reshape(2, -1)
    assert torch.allclose(got, ref)
    assert not torch.allclose(
        got, brain.modules.embedding_model(feats, lens).reshape(2, -1)
    )


def test_unknown_method_rejected(tmp_path):
    with pytest.raises(ValueError, match="method"):
        SDPNBrain(
            modules={}, hparams={"method": "byol"}, run_opts={"device": "cpu"}
        )


@pytest.mark.parametrize("method", ["sdpn", "dino"])
def test_student_global_views_skip_same_view_pairs(method, tmp_path):
    # RDINO's views: the student embeds the 2 global views (first) and the
    # 2 locals; the loss pairs each teacher global with the 3 other views.
    from speechbrain_ssv.losses.sdpn import (
        dino_loss,
        sdpn_loss,
    )

    brain = _make_brain(method, tmp_path, 0, n_global=2, student_global=True)
    batch = _batch(n_global=2)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    b = 4
    assert out["teacher_out"].shape[0] == 2 * b
    assert out["student_out"].shape[0] == 4 * b
    with torch.no_grad():
        # The student's first views are the teacher's global views.
        g_wavs, g_lens = brain._stack_views(batch, "global", 2, None)
        glob = brain.modules.embedding_model(
            brain._features(g_wavs, g_lens), g_lens
        )
        assert torch.allclose(
            out["student_emb"][: 2 * b], glob.reshape(2 * b, -1), atol=1e-5
        )
        loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
        k = out["teacher_out"].shape[-1]
        if method == "dino":
            center = torch.zeros(k)  # the centre before this batch's update
            ref = dino_loss(
                out["teacher_out"].reshape(2, b, k),
                out["student_out"].reshape(4, b, k),
                center,
                teacher_temp=brain.dino_teacher_temp(),
                skip_same_view=True,
            )["loss"]
        else:
            t = brain.modules.prototypes(out["teacher_out"])
            s = brain.modules.prototypes(out["student_out"])
            k = t.shape[-1]
            ref = sdpn_loss(
                t.reshape(2, b, k),
                s.reshape(4, b, k),
                out["student_emb"].reshape(4, b, -1),
                skip_same_view=True,
            )["loss"]
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def _count_host_syncs(monkeypatch, calls):
    """Record every tensor-to-Python conversion whose caller is a frame of
    the package: each one waits for the device (a host sync on a GPU)."""
    import sys

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            frame = sys._getframe(1)
            module = frame.f_globals.get("__name__", "")
            if module.split(".")[0] == "speechbrain_ssv":
                calls.append(f"{name} at {module}:{frame.f_lineno}")
            return original(self, *args, **kwargs)

        return wrapper

    for name in (
        "item",
        "tolist",
        "cpu",
        "numpy",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
    ):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, counting(name, original))


@pytest.mark.parametrize("method", ["sdpn", "dino"])
def test_sdpn_step_has_no_host_sync(method, tmp_path, monkeypatch):
    brain = _make_brain(method, tmp_path, seed=0)
    brain.fit_batch(_batch(0))  # the first step allocates the monitor
    calls = []
    _count_host_syncs(monkeypatch, calls)
    brain.fit_batch(_batch(1))
    brain.fit_batch(_batch(2))
    monkeypatch.undo()
    assert calls == []
    # The counter does see the package's conversions: the epoch-end read.
    _count_host_syncs(monkeypatch, calls)
    brain.collapse_stats()
    monkeypatch.undo()
    assert calls


@pytest.mark.parametrize("method", ["sdpn", "dino"])
def test_collapse_stats_equal_per_step_float_sums(method, tmp_path):
    # The monitor used to convert every statistic to a Python float at
    # each step; its device sums must give the same epoch values.
    import math

    brain = _make_brain(method, tmp_path, seed=0)
    seen = []
    accumulate = brain._accumulate

    def recording(out, t_scores, t_temp, t_emb):
        terms = {
            k: out[k].clone() for k in ("ce", "memax", "koleo") if k in out
        }
        seen.append((terms, t_scores.clone(), t_temp, t_emb.clone()))
        accumulate(out, t_scores, t_temp, t_emb)

    brain._accumulate = recording
    for step in range(3):
        brain.fit_batch(_batch(step))
    stats = brain.collapse_stats()

    n, entropy, std, usage, terms = 0, 0.0, 0.0, None, {}
    for out, t_scores, t_temp, t_emb in seen:
        probs = torch.softmax(t_scores.float() / t_temp, dim=-1)
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        entropy += float(ent)
        emb = torch.nn.functional.normalize(t_emb.float(), dim=-1)
        std += float(emb.std(dim=0).mean() * math.sqrt(emb.shape[-1]))
        counts = torch.bincount(t_scores.argmax(-1), minlength=K).double()
        usage = counts if usage is None else usage + counts
        for key, value in out.items():
            terms[key] = terms.get(key, 0.0) + float(value)
        n += 1
    freq = usage / usage.sum()
    perplexity = float(
        torch.exp(-(freq * torch.log(freq.clamp_min(1e-12))).sum())
    )
    expected = {
        "teacher_entropy": entropy / n,
        "proto_perplexity": perplexity,
        "emb_std": std / n,
        **{key: value / n for key, value in terms.items()},
    }
    assert n == 3
    assert list(stats) == list(expected)
    keys = ["ce", "memax", "koleo"] if method == "sdpn" else ["ce"]
    assert list(stats)[3:] == keys
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # Held on the device between steps, not as Python numbers.
    assert all(torch.is_tensor(v) for v in brain._mon["sums"].values())
