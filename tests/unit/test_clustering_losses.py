"""Multi-objective clustering losses (IMSAT + VAT, virtual mixup, SupCon,
InfoNCE, VICReg) and the clustering MLP / running marginal."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ssv.clustering.metrics import cluster_accuracy
from speechbrain_ssv.lobes.clustering import ClusteringMLP, RunningMarginal
from speechbrain_ssv.losses.clustering import (
    augmentation_consistency_loss,
    categorical_kl,
    conditional_entropy,
    imsat_loss,
    knn_radius,
    marginal_entropy,
    marginal_entropy_surrogate,
    vat_loss,
    vat_perturbation,
    virtual_mixup_loss,
)
from speechbrain_ssv.losses.contrastive import (
    info_nce_loss,
    supcon_loss,
    supcon_loss_low_rank,
    vicreg_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: intra-op threads only add contention on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _h(ps):
    return -sum(p * math.log(p) for p in ps if p > 0)


# -- IMSAT entropies (Eq. 2) ----------------------------------------------


def test_imsat_entropies_on_a_hand_example():
    probs = torch.tensor(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]],
        dtype=torch.float64,
    )
    h_cond = (
        _h([0.7, 0.2, 0.1]) + _h([0.1, 0.8, 0.1]) + 0.0 + _h([0.25, 0.25, 0.5])
    ) / 4
    p_bar = [(0.7 + 0.1 + 1.0 + 0.25) / 4, (0.2 + 0.8 + 0.0 + 0.25) / 4]
    p_bar.append(1 - sum(p_bar))
    h_marg = _h(p_bar)
    assert math.isclose(
        float(conditional_entropy(probs)), h_cond, rel_tol=1e-12
    )
    assert math.isclose(
        float(marginal_entropy(probs.mean(0))), h_marg, rel_tol=1e-12
    )
    out = imsat_loss(probs, lam=0.5, mu=3.5, r_sat=torch.tensor(0.25))
    assert math.isclose(
        float(out["loss"]), 0.25 + 0.5 * (h_cond - 3.5 * h_marg), rel_tol=1e-12
    )
    assert math.isclose(float(out["marginal_entropy"]), h_marg, rel_tol=1e-12)
    assert float(out["r_sat"]) == 0.25


def test_entropy_extremes_and_finite_gradient_at_exact_zeros():
    c = 8
    uniform = torch.full((3, c), 1.0 / c)
    assert math.isclose(
        float(conditional_entropy(uniform)), math.log(c), rel_tol=1e-6
    )
    one_hot = F.one_hot(torch.tensor([0, 3, 5]), c).float()
    assert float(conditional_entropy(one_hot)) == 0.0
    # Softmax underflows to exact zeros with confident logits: still finite.
    logits = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    probs = F.softmax(logits, dim=1)
    assert probs[0, 2] == 0
    loss = imsat_loss(probs, lam=1.0, mu=1.0)["loss"]
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_running_marginal_surrogate_has_the_data_set_entropy_gradient():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    running = torch.tensor([0.4, 0.1, 0.2, 0.2, 0.1], dtype=torch.float64)
    p_bar = F.softmax(logits, 1).mean(0)
    (g_sur,) = torch.autograd.grad(
        marginal_entropy_surrogate(p_bar, running), logits
    )
    # Reference: d/dlogits of <p_bar, dH/dq at q = running>.
    dh = -(torch.log(running) + 1)
    p_bar = F.softmax(logits, 1).mean(0)
    (g_ref,) = torch.autograd.grad((p_bar * dh).sum(), logits)
    assert torch.allclose(g_sur, g_ref)
    # ... and with running == batch marginal it is the plain batch entropy.
    p_bar = F.softmax(logits, 1).mean(0)
    same = marginal_entropy_surrogate(p_bar, p_bar.detach())
    (g1,) = torch.autograd.grad(same, logits)
    p_bar = F.softmax(logits, 1).mean(0)
    (g2,) = torch.autograd.grad(marginal_entropy(p_bar), logits)
    assert torch.allclose(g1, g2)
    assert math.isclose(
        float(same.detach()),
        float(marginal_entropy(p_bar.detach())),
        rel_tol=1e-12,
    )


def test_running_marginal_converges_to_the_true_marginal():
    g = torch.Generator().manual_seed(0)
    c, batch = 50, 16  # more clusters than a batch can show
    true = torch.distributions.Dirichlet(torch.ones(c)).sample()
    rm = RunningMarginal(c, momentum=RunningMarginal.momentum_for(c, batch, 40))
    for _ in range(1500):
        labels = torch.multinomial(true, batch, replacement=True, generator=g)
        # Soft posteriors whose expectation is the true marginal.
        probs = 0.9 * F.one_hot(labels, c).float() + 0.1 / c
        est = rm.update(probs)
    assert torch.allclose(est.sum(), torch.tensor(1.0))
    assert (est - true).abs().sum() < 0.15
    # The batch estimate alone is far off (it can show at most 16 clusters).
    assert (probs.mean(0) - true).abs().sum() > 0.5
    # Checkpointable through state_dict.
    rm2 = RunningMarginal(c, momentum=rm.momentum)
    rm2.load_state_dict(rm.state_dict())
    assert torch.equal(rm2.marginal, rm.marginal)


def test_running_marginal_rejects_bad_input():
    with pytest.raises(ValueError, match="momentum"):
        RunningMarginal(3, momentum=1.0)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        RunningMarginal(3).update(torch.ones(2, 4))


# -- VAT ------------------------------------------------------------------


def _model(d=6, c=4, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, c)
    ).double()


def test_vat_perturbation_has_norm_eps_and_increases_the_kl():
    model = _model()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    eps = 0.3
    with torch.no_grad():
        clean = model(x)
    r_adv = vat_perturbation(model, x, xi=1e-6, eps=eps, n_power=2, generator=g)
    assert torch.allclose(
        r_adv.norm(dim=1), torch.full((64,), eps, dtype=torch.float64)
    )

    def kl_rows(r):
        with torch.no_grad():
            lp, lq = F.log_softmax(clean, 1), F.log_softmax(model(x + r), 1)
        return (lp.exp() * (lp - lq)).sum(1)

    adv = kl_rows(r_adv)
    rand = F.normalize(
        torch.randn(64, 6, generator=g, dtype=torch.float64), dim=1
    )
    rnd = kl_rows(eps * rand)
    assert (adv > 0).all()
    # The adversarial direction beats a random one of the same norm for
    # (nearly) every sample, and by a wide margin on average.
    assert (adv >= rnd).float().mean() > 0.95
    assert adv.mean() > 3 * rnd.mean()
    # vat_loss is the mean of these KLs.
    g2 = torch.Generator().manual_seed(7)
    r = vat_perturbation(model, x, eps=eps, n_power=2, generator=g2)
    g2 = torch.Generator().manual_seed(7)
    loss = vat_loss(model, x, eps=eps, n_power=2, generator=g2)
    assert math.isclose(
        float(loss.detach()), float(kl_rows(r).mean()), rel_tol=1e-9
    )


def test_vat_per_sample_radius_and_no_parameter_gradients():
    model = _model()
    x = torch.randn(5, 6, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64)
    r = vat_perturbation(model, x, eps=eps)
    assert torch.allclose(r.norm(dim=1), eps)
    assert all(p.grad is None for p in model.parameters())
    # A sample with an exactly zero KL gradient keeps its random direction.
    dead = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        dead.weight.zero_()
    r = vat_perturbation(dead, x, eps=0.7)
    assert torch.allclose(
        r.norm(dim=1), torch.full((5,), 0.7, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="one radius per sample"):
        vat_perturbation(model, x, eps=torch.ones(3))


def test_vat_loss_trains_the_model_and_frozen_bn_keeps_running_stats():
    model = ClusteringMLP(
        6, n_clusters=4, hidden_size=16, output_init_scale=1.0
    )
    x = torch.randn(32, 6)
    before = [b.clone() for b in model.buffers()]
    with model.frozen_bn_stats():
        loss = vat_loss(model, x, eps=0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    loss.backward()
    assert model.output.weight.grad is not None
    assert model.output.weight.grad.abs().sum() > 0


def test_knn_radius_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    d = torch.cdist(x, x)
    ref = 0.25 * d.sort(dim=1).values[:, 10]  # column 0 is the point itself
    assert torch.allclose(knn_radius(x, k=10, chunk=7), ref)
    with pytest.raises(ValueError, match="neighbours"):
        knn_radius(x[:5], k=10)


# -- virtual mixup (Eq. 3) -------------------------------------------------


def test_virtual_mixup_target_is_the_mix_of_the_detached_logits():
    model = _model(c=3)
    x = torch.randn(4, 6, dtype=torch.float64)
    partner = torch.tensor([2, 0, 3, 1])
    lam = torch.tensor([0.3, 0.5, 0.9, 1.0], dtype=torch.float64)
    loss = virtual_mixup_loss(model, x, partner=partner, lam=lam)
    with torch.no_grad():
        z = model(x)
        target_logits = lam[:, None] * z + (1 - lam[:, None]) * z[partner]
        x_mix = lam[:, None] * x + (1 - lam[:, None]) * x[partner]
        ref = categorical_kl(target_logits, model(x_mix))
    assert math.isclose(float(loss.detach()), float(ref), rel_tol=1e-12)
    # Probability mixing (Eq. 3 as printed).
    loss_p = virtual_mixup_loss(
        model, x, partner=partner, lam=lam, mix_logits=False
    )
    with torch.no_grad():
        p = F.softmax(z, 1)
        t = lam[:, None] * p + (1 - lam[:, None]) * p[partner]
        q = F.log_softmax(model(x_mix), 1)
        ref_p = (t * (t.log() - q)).sum(1).mean()
    assert math.isclose(float(loss_p.detach()), float(ref_p), rel_tol=1e-12)
    # The target is detached: gradients only flow through f(x_mix).
    loss.backward()
    model.zero_grad()
    with torch.no_grad():
        fixed_target = F.softmax(target_logits, 1)
    manual = -(fixed_target * F.log_softmax(model(x_mix), 1)).sum(1).mean()
    manual.backward()
    g_manual = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    virtual_mixup_loss(model, x, partner=partner, lam=lam).backward()
    for a, b in zip(g_manual, (p.grad for p in model.parameters())):
        assert torch.allclose(a, b)


def test_virtual_mixup_is_zero_when_mixing_a_sample_with_itself():
    model = _model()
    x = torch.randn(5, 6, dtype=torch.float64)
    loss = virtual_mixup_loss(model, x, partner=torch.arange(5), alpha=1.0)
    assert abs(float(loss.detach())) < 1e-12


# -- SupCon ------------------------------------------------------------------


def test_supcon_equals_a_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    u = F.normalize(z, dim=1)
    tau = 0.5
    s = (u @ u.t() / tau).tolist()
    positives = {0: [1], 1: [0], 2: [3], 3: [2]}
    per = []
    for i in range(4):
        den = sum(math.exp(s[i][a]) for a in range(4) if a != i)
        terms = [math.log(math.exp(s[i][p]) / den) for p in positives[i]]
        per.append(-sum(terms) / len(terms))
    hand = sum(per) / 4
    got = supcon_loss(z, labels, temperature=tau, base_temperature=tau)
    assert math.isclose(float(got), hand, rel_tol=1e-6)
    # tau / tau_b scales the loss.
    got2 = supcon_loss(z, labels, temperature=tau, base_temperature=1.0)
    assert math.isclose(float(got2), tau * hand, rel_tol=1e-6)


def test_supcon_multiple_positives_views_and_anchors_without_positive():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])  # sample 2 has no positive
    u = F.normalize(z, dim=1)
    s = (u @ u.t()).tolist()
    per = []
    for i in (0, 1):
        den = sum(math.exp(s[i][a]) for a in range(3) if a != i)
        per.append(-math.log(math.exp(s[i][1 - i]) / den))
    assert math.isclose(
        float(supcon_loss(z, labels)), sum(per) / 2, rel_tol=1e-6
    )
    # Two views: each view is a positive of the other view of its sample.
    views = torch.stack([z, z], dim=1)
    loss = supcon_loss(views, torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss) and float(loss) > 0
    # No positive anywhere: zero, still differentiable.
    zz = z.clone().requires_grad_(True)
    loss = supcon_loss(zz, torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and zz.grad is not None
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(z, torch.tensor([0, 1]))


@pytest.mark.parametrize("with_bias", [True, False])
def test_supcon_low_rank_equals_supcon_on_the_logits(with_bias):
    torch.manual_seed(0)
    h = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, dtype=torch.float64, requires_grad=True)
    bias = b if with_bias else None
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 5])
    logits = h @ w.t() + (b if with_bias else 0)
    direct = supcon_loss(logits, labels, temperature=0.5, base_temperature=1)
    direct_grads = torch.autograd.grad(direct, (h, w, b), allow_unused=True)
    low = supcon_loss_low_rank(h, w, bias, labels, 0.5, 1.0)
    low_grads = torch.autograd.grad(low, (h, w, b), allow_unused=True)
    assert math.isclose(float(low.detach()), float(direct), rel_tol=1e-10)
    if not with_bias:  # b takes no part in either loss
        assert low_grads[2] is None and direct_grads[2] is None
    for g1, g2 in zip(low_grads, direct_grads):
        if g2 is not None:
            assert torch.allclose(g1, g2, atol=1e-10)
    # Anchors without positive only: zero, and still differentiable.
    loss = supcon_loss_low_rank(h, w, bias, torch.arange(12))
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="labels"):
        supcon_loss_low_rank(h, w, bias, torch.arange(5))
    with pytest.raises(ValueError, match="features"):
        supcon_loss_low_rank(h, w[:, :4], bias, labels)


# -- optional ablation terms ------------------------------------------------


def test_info_nce_equals_a_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = (z @ z.t()).tolist()
    pos = {0: 2, 1: 3, 2: 0, 3: 1}
    per = []
    for i in range(4):
        den = sum(math.exp(s[i][k]) for k in range(4) if k != i)
        per.append(-math.log(math.exp(s[i][pos[i]]) / den))
    assert math.isclose(
        float(info_nce_loss(z1, z2)), sum(per) / 4, rel_tol=1e-6
    )


def test_vicreg_terms_equal_hand_computation():
    z1 = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    z2 = torch.tensor([[1.0, 1.0], [2.0, 0.0], [4.0, 4.0]])
    out = vicreg_loss(z1, z2, sim_weight=1.0, var_weight=1.0, cov_weight=0.5)
    inv = (1.0 + 1.0 + 0.0) / 3

    def var_cov(z):
        zc = z - z.mean(0)
        cov = zc.t() @ zc / 2
        std = torch.sqrt(torch.diagonal(cov) + 1e-4)
        v = torch.relu(1 - std).mean()
        c = 2 * cov[0, 1] ** 2 / 2
        return float(v), float(c)

    v1, c1 = var_cov(z1)
    v2, c2 = var_cov(z2)
    assert math.isclose(float(out["invariance"]), inv, rel_tol=1e-6)
    assert math.isclose(
        float(out["variance"]), v1 + v2, rel_tol=1e-6, abs_tol=1e-9
    )
    assert math.isclose(float(out["covariance"]), c1 + c2, rel_tol=1e-6)
    assert math.isclose(
        float(out["loss"]), inv + (v1 + v2) + 0.5 * (c1 + c2), rel_tol=1e-6
    )
    # A collapsed batch pays the full variance penalty.
    collapsed = vicreg_loss(torch.ones(4, 3))
    assert math.isclose(
        float(collapsed["variance"]), 1 - math.sqrt(1e-4), rel_tol=1e-6
    )


def test_augmentation_consistency_is_kl_aug_to_clean():
    a = torch.tensor([[2.0, 0.0]])
    b = torch.tensor([[0.0, 0.0]])
    p = F.softmax(a, 1)[0].tolist()
    hand = sum(pi * math.log(pi / 0.5) for pi in p)
    assert math.isclose(
        float(augmentation_consistency_loss(a, b)), hand, rel_tol=1e-6
    )


# -- clustering MLP ------------------------------------------------------------


def test_clustering_mlp_architecture_and_predict():
    model = ClusteringMLP(
        5, n_clusters=7, hidden_size=11, output_init_scale=1e-4
    )
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (5, 11),
        (11, 11),
        (11, 7),
    ]
    assert (
        sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 2
    )
    x = torch.randn(9, 5)
    model.eval()
    assert torch.equal(model.predict(x, batch_size=4), model(x).argmax(1))
    # IMSAT's small output init: near-uniform posteriors at the start.
    assert (model.probs(x) - 1 / 7).abs().max() < 1e-2
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        model(torch.randn(2, 4))


def test_multi_objective_training_separates_blobs():
    # L_IMSAT + L_Mixup + L_SupCon (Eq. 1) on 4 well-separated blobs.
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 8, generator=g), dim=1) * 3
    y = torch.arange(4).repeat_interleave(50)
    x = F.normalize(centres[y] + 0.3 * torch.randn(200, 8, generator=g), dim=1)
    torch.manual_seed(0)
    model = ClusteringMLP(8, n_clusters=4, hidden_size=32)
    rm = RunningMarginal(4, momentum=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        logits = model(x)
        probs = F.softmax(logits, 1)
        with model.frozen_bn_stats():
            r_sat = vat_loss(model, x, eps=0.05, logits=logits, generator=g)
            mix = virtual_mixup_loss(model, x, logits=logits, generator=g)
        imsat = imsat_loss(
            probs, rm.update(probs), lam=0.5, mu=3.5, r_sat=r_sat
        )
        sup = supcon_loss(logits, logits.argmax(1).detach())
        loss = imsat["loss"] + mix + sup
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(imsat["cond_entropy"]) < 0.5
    assert float(imsat["marginal_entropy"]) > math.log(4) - 0.01
    assert cluster_accuracy(y, model.predict(x)) > 0.95


def test_vat_direction_survives_float32_at_the_recipe_xi():
    # On unit-norm inputs, xi = 1e-6 (VAT's) puts x + xi d within a few
    # float32 ulps of x: the power-iteration direction is mostly rounding
    # noise. The recipes' xi = 1e-2 gives the float64 direction.
    torch.manual_seed(0)
    model = ClusteringMLP(64, n_clusters=50, hidden_size=128).eval()
    x = F.normalize(torch.randn(200, 64), dim=1)

    def direction(xi, dtype):
        m = model.to(dtype)
        r = vat_perturbation(
            m, x.to(dtype), xi=xi, eps=1.0,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        return r.double()

    def median_cosine(xi):
        cos = F.cosine_similarity(
            direction(xi, torch.float32), direction(xi, torch.float64), dim=1
        )
        return float(cos.median())

    assert median_cosine(1e-2) > 0.99
    assert median_cosine(1e-6) < 0.99
