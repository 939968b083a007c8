"""Every loss computes in float32 under ``torch.autocast`` (bf16 recipes).

Each case feeds a loss the outputs of tiny ``torch.nn.Linear`` layers run
under ``torch.autocast("cpu", dtype=torch.bfloat16)``, so its inputs really
are bfloat16 (on CPU autocast even keeps ``softmax`` in bfloat16), and checks:

* **dtype**: every floating-point output is float32 (without
  :func:`~speechbrain_ssv.utils.precision.float32_loss` most are bfloat16);
* **same inputs** (``rtol=1e-4, atol=1e-5``): the result equals the plain
  float32 computation, outside autocast, on the *same* bfloat16-rounded
  inputs cast to float32. This is the fair comparison: the loss itself must
  add no low-precision error, so the two run the very same float32 ops and
  agree to rounding (in practice bit for bit; the tolerance only allows for
  a different summation order on other hardware). bfloat16 arithmetic inside
  the loss would miss it by ~1e-2 relative.
* **un-rounded inputs** (``rtol=atol=0.05``; 0.2 for the AAM / AdaFace
  logits): the result stays near the float32 computation on the float32
  Linear outputs. The only difference left is the rounding of the inputs to
  bfloat16's ~3 significant digits (unit roundoff 2^-8 = 3.9e-3), which the
  losses amplify: temperatures of 0.1 and 0.04 by 10 and 25, the margin
  scales ``s = 30, 64`` by as much (a cosine off by 2e-3 is a logit off by
  0.13). The largest deviations seen on these inputs are 0.024 and, for
  AdaFace, 0.09 (in units of ``1 + |reference|``): the tolerances leave about
  a factor 2 and only guard against gross errors (a wrong cast, a lost
  gradient path). VAT at its default step ``xi = 1e-6`` is exempt: that
  finite difference sits at float32's own noise level.
* **gradient**: the backward pass reaches the (float32) Linear weights
  through the casts, finite.

Sinkhorn, the most precision-hungry step, is also checked on its own against
float32 (:func:`test_sinkhorn_under_autocast_equals_float32`), and so are
the helper's casting and autocast switching.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ssv.lobes.club import CategoricalCLUB, GaussianCLUB
from speechbrain_ssv.losses import (
    club,
    clustering,
    common,
    contrastive,
    margins,
    mixap,
    sdpn,
    vae,
)
from speechbrain_ssv.utils.precision import float32_loss, to_float32

IN_DIM = 8  # width of the bf16-castable source fed to each Linear
SAME_TOL = {"rtol": 1e-4, "atol": 1e-5}
LOOSE_TOL = 0.05
SCALED_TOL = 0.2  # margin logits: bf16 cosines times s = 30 or 64
DETACHES_INPUTS = {"vat_loss"}


def _seeded(fn, seed=0):
    # Build a module from the global RNG without disturbing other tests.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _cos(a, b):
    # Cosine scores as a model produces them: a bf16 matmul under autocast.
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)


def _labels(n, k=3):
    return torch.arange(n) % k


_VAT_MODEL = _seeded(lambda: torch.nn.Linear(6, 5), seed=1)
_GCLUB = _seeded(lambda: GaussianCLUB(6, 4, hidden=8), seed=2)
_CCLUB = _seeded(lambda: CategoricalCLUB(6, 5, hidden=8), seed=3)
_TARGETS = mixap.imix_targets(torch.tensor([1, 2, 3, 0]), torch.tensor(0.7))

# (name, shapes of the Linear outputs, make(outputs) -> loss arguments,
#  loss(*arguments), tolerance against un-rounded inputs). ``make`` runs
# under autocast too: it turns Linear outputs into the loss's real inputs
# (probabilities, cosines), so those are bf16 as well.
CASES = [
    # ---- SDPN / DINO (losses/sdpn.py)
    (
        "sinkhorn_knopp",
        [(16, 8)],
        lambda x: (x.softmax(-1),),
        lambda p: sdpn.sinkhorn_knopp(p, n_iters=3),
        LOOSE_TOL,
    ),
    (
        "prototype_scores",
        [(12, 6), (10, 6)],
        lambda z, c: (z, c),
        sdpn.prototype_scores,
        LOOSE_TOL,
    ),
    (
        "sharpen",
        [(12, 6)],
        lambda x: (x.softmax(-1),),
        lambda p: sdpn.sharpen(p, 0.25),
        LOOSE_TOL,
    ),
    (
        "sdpn_teacher_targets",
        [(12, 6), (10, 6)],
        lambda z, c: (_cos(z, c),),
        lambda s: sdpn.sdpn_teacher_targets(s, 0.1, 0.25),
        LOOSE_TOL,
    ),
    (
        "student_log_probs",
        [(12, 6), (10, 6)],
        lambda z, c: (_cos(z, c),),
        sdpn.student_log_probs,
        LOOSE_TOL,
    ),
    (
        "multiview_cross_entropy",
        [(2, 6, 10), (3, 6, 10)],
        lambda t, s: ((t / 0.5).softmax(-1), (s / 0.5).log_softmax(-1)),
        sdpn.multiview_cross_entropy,
        LOOSE_TOL,
    ),
    ("koleo", [(10, 5)], lambda x: (x,), sdpn.koleo, LOOSE_TOL),
    (
        "mean_entropy_penalty",
        [(12, 6)],
        lambda x: (x.softmax(-1),),
        sdpn.mean_entropy_penalty,
        LOOSE_TOL,
    ),
    (
        "sdpn_loss",
        [(2, 6, 5), (4, 6, 5), (10, 5), (4, 6, 3)],
        lambda t, s, c, e: (_cos(t, c), _cos(s, c), e),
        sdpn.sdpn_loss,
        LOOSE_TOL,
    ),
    (
        "dino_teacher_probs",
        [(2, 6, 10), (10,)],
        lambda t, c: (t, c),
        sdpn.dino_teacher_probs,
        LOOSE_TOL,
    ),
    (
        "dino_center_update",
        [(10,), (12, 10)],
        lambda c, t: (c, t),
        sdpn.dino_center_update,
        LOOSE_TOL,
    ),
    (
        "dino_loss",
        [(2, 6, 10), (4, 6, 10), (10,)],
        lambda t, s, c: (t, s, c),
        sdpn.dino_loss,
        LOOSE_TOL,
    ),
    # ---- angular prototypical loss (losses/common.py, losses/mixap.py)
    (
        "cosine_logits",
        [(4, 6), (4, 6)],
        lambda q, a: (q, a),
        lambda q, a: common.cosine_logits(q, a, 10.0, -5.0),
        LOOSE_TOL,
    ),
    (
        "soft_target_cross_entropy",
        [(4, 6), (4, 6)],
        lambda q, a: (10 * _cos(q, a) - 5,),
        lambda z: common.soft_target_cross_entropy(z, _TARGETS),
        LOOSE_TOL,
    ),
    (
        "angular_prototypical_loss",
        [(4, 6), (4, 6)],
        lambda q, a: (10 * _cos(q, a) - 5,),
        common.angular_prototypical_loss,
        LOOSE_TOL,
    ),
    (
        "imix_loss",
        [(4, 6), (4, 6)],
        lambda q, a: (10 * _cos(q, a) - 5,),
        lambda z: mixap.imix_loss(
            z, torch.tensor([1, 2, 3, 0]), torch.tensor([0.7, 0.6, 0.9, 0.5])
        ),
        LOOSE_TOL,
    ),
    # ---- clustering losses (losses/clustering.py)
    (
        "conditional_entropy",
        [(12, 6)],
        lambda x: (x.softmax(-1),),
        clustering.conditional_entropy,
        LOOSE_TOL,
    ),
    (
        "marginal_entropy",
        [(12, 6)],
        lambda x: (x.softmax(-1).mean(0),),
        clustering.marginal_entropy,
        LOOSE_TOL,
    ),
    (
        "marginal_entropy_surrogate",
        [(12, 6), (20, 6)],
        lambda x, r: (x.softmax(-1).mean(0), r.softmax(-1).mean(0)),
        clustering.marginal_entropy_surrogate,
        LOOSE_TOL,
    ),
    (
        "imsat_loss",
        [(12, 6), (20, 6), (1,)],
        lambda x, r, v: (x.softmax(-1), r.softmax(-1).mean(0), v.pow(2)[0]),
        lambda p, m, v: clustering.imsat_loss(p, marginal=m, r_sat=v),
        LOOSE_TOL,
    ),
    (
        "categorical_kl",
        [(12, 6), (12, 6)],
        lambda a, b: (a, b),
        clustering.categorical_kl,
        LOOSE_TOL,
    ),
    (
        # xi = 0.1: a finite-difference step far above float32's noise, so
        # the adversarial direction is stable under bf16 input rounding.
        "vat_perturbation",
        [(10, 6)],
        lambda x: (x,),
        lambda x: clustering.vat_perturbation(
            _VAT_MODEL, x, xi=0.1, eps=0.5, n_power=2, generator=_gen()
        ),
        LOOSE_TOL,
    ),
    (
        # The default step xi = 1e-6 is at float32's noise level on unit-scale
        # inputs, so only the same-inputs comparison is meaningful (None);
        # under autocast the step would vanish altogether (bf16 input).
        "vat_perturbation_default_xi",
        [(10, 6)],
        lambda x: (x,),
        lambda x: clustering.vat_perturbation(
            _VAT_MODEL, x, eps=0.5, generator=_gen()
        ),
        None,
    ),
    (
        "vat_loss",
        [(10, 6)],
        lambda x: (x,),
        lambda x: clustering.vat_loss(
            _VAT_MODEL, x, xi=0.1, eps=0.5, n_power=2, generator=_gen()
        ),
        LOOSE_TOL,
    ),
    (
        "virtual_mixup_loss",
        [(10, 6)],
        lambda x: (x,),
        lambda x: clustering.virtual_mixup_loss(
            lambda v: torch.tanh(_VAT_MODEL(v)), x, generator=_gen()
        ),
        LOOSE_TOL,
    ),
    (
        "virtual_mixup_loss_probs",
        [(10, 6)],
        lambda x: (x,),
        lambda x: clustering.virtual_mixup_loss(
            lambda v: torch.tanh(_VAT_MODEL(v)),
            x,
            generator=_gen(),
            mix_logits=False,
        ),
        LOOSE_TOL,
    ),
    (
        "supcon_loss",
        [(12, 2, 6)],
        lambda x: (x,),
        lambda x: contrastive.supcon_loss(x, _labels(12), temperature=0.1),
        LOOSE_TOL,
    ),
    (
        "supcon_loss_low_rank",
        [(12, 5), (20, 5), (20,)],
        lambda h, w, b: (h, w, b),
        lambda h, w, b: contrastive.supcon_loss_low_rank(
            h, w, b, _labels(12), temperature=0.1
        ),
        LOOSE_TOL,
    ),
    (
        "info_nce_loss",
        [(8, 6), (8, 6)],
        lambda a, b: (a, b),
        lambda a, b: contrastive.info_nce_loss(a, b, temperature=0.1),
        LOOSE_TOL,
    ),
    (
        "vicreg_loss",
        [(8, 6), (8, 6)],
        lambda a, b: (a, b),
        contrastive.vicreg_loss,
        LOOSE_TOL,
    ),
    (
        "augmentation_consistency_loss",
        [(12, 6), (12, 6)],
        lambda a, b: (a, b),
        clustering.augmentation_consistency_loss,
        LOOSE_TOL,
    ),
    # ---- vCLUB (losses/club.py, lobes/club.py)
    (
        "gaussian_log_likelihood",
        [(10, 4), (10, 4), (10, 4)],
        lambda m, v, y: (m, v, y),
        club.gaussian_log_likelihood,
        LOOSE_TOL,
    ),
    (
        "gaussian_club_bound",
        [(10, 4), (10, 4), (10, 4)],
        lambda m, v, y: (m, v, y),
        club.gaussian_club_bound,
        LOOSE_TOL,
    ),
    (
        "categorical_log_likelihood",
        [(10, 5)],
        lambda x: (x.log_softmax(-1),),
        lambda lp: club.categorical_log_likelihood(lp, _labels(10, 5)),
        LOOSE_TOL,
    ),
    (
        "categorical_club_bound",
        [(10, 5)],
        lambda x: (x.log_softmax(-1),),
        lambda lp: club.categorical_club_bound(lp, _labels(10, 5)),
        LOOSE_TOL,
    ),
    (
        "ap_over_pairs",
        [(6, 5), (6, 5)],
        lambda a, b: (a, b),
        lambda a, b: club.ap_over_pairs(a, b, scale=(10.0, -5.0)),
        LOOSE_TOL,
    ),
    (
        "disentangle_total",
        [(4,), (4,)],
        lambda a, b: ({"cls_s": a.pow(2).mean(), "mi_s_d": b.mean()},),
        lambda t: club.disentangle_total(t, {"cls_s": 5.0, "mi_s_d": 0.5}),
        LOOSE_TOL,
    ),
    (
        "GaussianCLUB.log_likelihood",
        [(10, 6), (10, 4)],
        lambda x, y: (x, y),
        _GCLUB.log_likelihood,
        LOOSE_TOL,
    ),
    (
        "GaussianCLUB.learning_loss",
        [(10, 6), (10, 4)],
        lambda x, y: (x, y),
        _GCLUB.learning_loss,
        LOOSE_TOL,
    ),
    (
        "GaussianCLUB.mi_upper_bound",
        [(10, 6), (10, 4)],
        lambda x, y: (x, y),
        _GCLUB.mi_upper_bound,
        LOOSE_TOL,
    ),
    (
        "CategoricalCLUB.log_likelihood",
        [(10, 6)],
        lambda x: (x,),
        lambda x: _CCLUB.log_likelihood(x, _labels(10, 5)),
        LOOSE_TOL,
    ),
    (
        "CategoricalCLUB.learning_loss",
        [(10, 6)],
        lambda x: (x,),
        lambda x: _CCLUB.learning_loss(x, _labels(10, 5)),
        LOOSE_TOL,
    ),
    (
        "CategoricalCLUB.mi_upper_bound",
        [(10, 6)],
        lambda x: (x,),
        lambda x: _CCLUB.mi_upper_bound(x, _labels(10, 5)),
        LOOSE_TOL,
    ),
    # ---- VAE (losses/vae.py)
    (
        "gaussian_kl",
        [(6, 4), (6, 4)],
        lambda m, v: (m, v),
        vae.gaussian_kl,
        LOOSE_TOL,
    ),
    (
        "gaussian_nll",
        [(6, 3, 5), (6, 3, 5)],
        lambda a, b: (a, b),
        vae.gaussian_nll,
        LOOSE_TOL,
    ),
    (
        "elbo_loss",
        [(6, 3, 5), (6, 3, 5), (6, 4), (6, 4)],
        lambda a, b, m, v: (a, b, m, v),
        vae.elbo_loss,
        LOOSE_TOL,
    ),
    # ---- margin losses (losses/margins.py)
    (
        "aam_logits",
        [(8, 6), (4, 6)],
        lambda e, w: (_cos(e, w),),
        lambda c: margins.aam_logits(c, _labels(8, 4)),
        SCALED_TOL,
    ),
    (
        "ocsoftmax_loss",
        [(8, 6), (4, 6)],
        lambda e, w: (_cos(e, w),),
        lambda c: margins.ocsoftmax_loss(c, _labels(8, 4)),
        LOOSE_TOL,
    ),
    (
        "adaface_logits",
        [(8, 6), (4, 6)],
        lambda e, w: (_cos(e, w), 20 + 5 * e.norm(dim=-1)),
        lambda c, n: margins.adaface_logits(
            c, _labels(8, 4), n, batch_mean=22.0, batch_std=5.0
        ),
        SCALED_TOL,
    ),
]


def _linear_outputs(shapes, seed=0):
    """Sources and tiny Linear layers whose outputs have ``shapes``."""
    g = _gen(seed)
    layers = []
    for shape in shapes:
        src = torch.randn(*shape[:-1], IN_DIM, generator=g)
        lin = torch.nn.Linear(IN_DIM, shape[-1])
        with torch.no_grad():
            lin.weight.copy_(
                torch.randn(lin.weight.shape, generator=g) / math.sqrt(IN_DIM)
            )
            lin.bias.copy_(0.1 * torch.randn(lin.bias.shape, generator=g))
        layers.append((src, lin))
    return layers


def _tensors(out):
    """The tensors of a loss output (a tensor, a tuple or a dict)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


@pytest.mark.parametrize(
    "name, shapes, make, loss_fn, loose", CASES, ids=[c[0] for c in CASES]
)
def test_loss_is_float32_under_bf16_autocast(
    name, shapes, make, loss_fn, loose
):
    """The loss's outputs are float32 under autocast, equal the float32
    computation on the same (bf16-rounded) inputs, stay close to it on the
    un-rounded inputs, and backpropagate to the inputs' producers."""
    layers = _linear_outputs(shapes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        args = make(*[lin(src) for src, lin in layers])
        bf16 = [t for t in _tensors(args) if t.dtype == torch.bfloat16]
        assert bf16, "the test's premise: autocast produced bf16 inputs"
        out = loss_fn(*args)
    got = _tensors(out)
    floats = [t for t in got if t.is_floating_point()]
    assert floats
    assert all(t.dtype == torch.float32 for t in floats), [
        t.dtype for t in floats
    ]

    # Fair comparison: plain float32 on the very same bf16-rounded values.
    same = _tensors(loss_fn(*to_float32(_detached(args))))
    for a, b in zip(got, same, strict=True):
        torch.testing.assert_close(a.detach(), b, **SAME_TOL)

    # Loose comparison: float32 end to end, inputs never rounded to bf16.
    ref = _tensors(loss_fn(*make(*[lin(src) for src, lin in layers])))
    for a, b in zip(got, ref, strict=True):
        if loose is not None and a.is_floating_point():
            torch.testing.assert_close(
                a.detach(), b.detach(), rtol=loose, atol=loose
            )

    # The casts are differentiable: gradients reach the float32 Linears.
    graded = [t for t in floats if t.requires_grad]
    if graded:
        sum(t.sum() for t in graded).backward()
        grads = [lin.weight.grad for _, lin in layers]
        # VAT's loss detaches its inputs by design (only the model learns).
        assert name in DETACHES_INPUTS or any(g is not None for g in grads)
        for g in grads:
            assert g is None or (
                g.dtype == torch.float32 and bool(torch.isfinite(g).all())
            )


def _detached(args):
    if isinstance(args, torch.Tensor):
        return args.detach()
    if isinstance(args, dict):
        return {k: _detached(v) for k, v in args.items()}
    if isinstance(args, (list, tuple)):
        return type(args)(_detached(v) for v in args)
    return args


def test_sinkhorn_under_autocast_equals_float32():
    """Sinkhorn's targets under bf16 autocast are float32 and equal the
    float32 ones on the same scores (the teacher's softmax at 0.04 would
    otherwise round to bf16)."""
    layers = _linear_outputs([(32, 16)], seed=1)
    src, lin = layers[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = (lin(src) / 0.5).softmax(-1)
        assert probs.dtype == torch.bfloat16
        q = sdpn.sinkhorn_knopp(probs, n_iters=5)
    assert q.dtype == torch.float32
    expected = sdpn.sinkhorn_knopp(probs.float(), n_iters=5)
    torch.testing.assert_close(q, expected, rtol=0, atol=0)
    torch.testing.assert_close(q.sum(1), torch.ones(32))


def test_to_float32_casts_nested_low_precision_tensors_only():
    """bf16 / fp16 tensors in containers become float32; float32 tensors
    are passed through (same object), float64 and integers are kept."""
    f32 = torch.ones(2)
    f64 = torch.ones(2, dtype=torch.float64)
    out = to_float32(
        (
            torch.ones(2, dtype=torch.bfloat16),
            [torch.ones(1, dtype=torch.float16), {"a": f32, "b": f64}],
            {"n": torch.arange(3), "s": "text", "none": None},
        )
    )
    assert isinstance(out, tuple) and isinstance(out[1], list)
    assert out[0].dtype == torch.float32
    assert out[1][0].dtype == torch.float32
    assert out[1][1]["a"] is f32
    assert out[1][1]["b"] is f64
    assert out[2]["n"].dtype == torch.long
    assert out[2]["s"] == "text" and out[2]["none"] is None


def test_float32_loss_disables_autocast_inside_only():
    """Autocast is off inside the wrapped function (matmuls in float32) and
    back on after it, also when the function raises."""
    seen = {}

    @float32_loss
    def probe(x, fail=False):
        seen["enabled"] = torch.is_autocast_enabled("cpu")
        seen["mm"] = (x @ x.t()).dtype
        if fail:
            raise RuntimeError("boom")
        return x

    with torch.autocast("cpu", dtype=torch.bfloat16):
        probe(torch.ones(2, 2))
        assert torch.is_autocast_enabled("cpu")
        with pytest.raises(RuntimeError):
            probe(torch.ones(2, 2), fail=True)
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert seen == {"enabled": False, "mm": torch.float32}
    assert probe.__name__ == "probe"
