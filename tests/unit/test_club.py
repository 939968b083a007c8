"""CLUB estimators: MI tracking on Gaussians, the O(N) / O(N^2) bounds against
brute-force N x N x D (C) references, and gradient routing (Algorithm 1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ssv.lobes.club import (
    CategoricalCLUB,
    GaussianCLUB,
    estimator_step,
    frozen,
)
from speechbrain_ssv.losses.club import (
    categorical_club_bound,
    gaussian_club_bound,
    gaussian_log_likelihood,
)


def _correlated(n, d, rho, gen):
    """x ~ N(0, I); y = rho x + sqrt(1 - rho^2) eps: unit marginals, per-dim
    correlation rho, I(x; y) = -d/2 log(1 - rho^2)."""
    x = torch.randn(n, d, generator=gen)
    eps = torch.randn(n, d, generator=gen)
    return x, rho * x + math.sqrt(1.0 - rho**2) * eps


def _train_gaussian_club(rho, logvar_bound, d=4, steps=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    club = GaussianCLUB(d, d, hidden=32, logvar_bound=logvar_bound)
    opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    for _ in range(steps):
        estimator_step(club, opt, *_correlated(256, d, rho, gen))
    with torch.no_grad():
        return float(club.mi_upper_bound(*_correlated(8192, d, rho, gen)))


@pytest.mark.parametrize(
    "rho, logvar_bound", [(0.0, 5.0), (0.5, 5.0), (0.9, 5.0), (0.9, 1.0)]
)
def test_gaussian_club_tracks_mi_of_correlated_gaussians(rho, logvar_bound):
    d = 4
    est = _train_gaussian_club(rho, logvar_bound, d=d)
    true_mi = -d / 2 * math.log(1 - rho**2)
    # With the optimal q(y|x) = N(rho x, s), s = max(1 - rho^2, e^-bound)
    # (the bound floors the variance), vCLUB's population value is
    # d rho^2 / s: the CLUB upper bound, not I itself (CLUB - I >= 0 by
    # Jensen), equal to I only at rho = 0.
    closed_form = d * rho**2 / max(1 - rho**2, math.exp(-logvar_bound))
    assert est == pytest.approx(closed_form, rel=0.1, abs=0.05)
    assert est >= true_mi - 0.05  # an upper bound of the true MI
    if rho == 0.0:
        assert abs(est) < 0.05


def test_gaussian_club_is_monotone_in_rho():
    ests = [_train_gaussian_club(r, 5.0, steps=200) for r in (0.0, 0.3, 0.6)]
    assert ests[0] < ests[1] < ests[2]


def test_gaussian_bound_equals_brute_force_pairs():
    gen = torch.Generator().manual_seed(1)
    n, d = 7, 3
    mu = torch.randn(n, d, generator=gen, requires_grad=True)
    logvar = (0.5 * torch.randn(n, d, generator=gen)).requires_grad_()
    y = torch.randn(n, d, generator=gen, requires_grad=True)
    fast = gaussian_club_bound(mu, logvar, y)
    # Eq. 12 as printed: 1/N^2 sum_ij [log q(y_i|x_i) - log q(y_j|x_i)], with
    # an explicit N x N x D tensor.
    diff = y.unsqueeze(0) - mu.unsqueeze(1)  # [i, j, d] = y_j - mu_i
    log_q = -0.5 * (diff.pow(2) * torch.exp(-logvar).unsqueeze(1)).sum(-1)
    brute = (log_q.diagonal().unsqueeze(1) - log_q).mean()
    assert torch.allclose(fast, brute, atol=1e-5)
    g_fast = torch.autograd.grad(fast, (mu, logvar, y))
    g_brute = torch.autograd.grad(brute, (mu, logvar, y))
    for a, b in zip(g_fast, g_brute):
        assert torch.allclose(a, b, atol=1e-5)


def test_gaussian_log_likelihood_matches_torch_normal():
    gen = torch.Generator().manual_seed(2)
    mu, logvar, y = (torch.randn(5, 3, generator=gen) for _ in range(3))
    ref = (
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        .log_prob(y)
        .sum(-1)
    )
    assert torch.allclose(
        gaussian_log_likelihood(mu, logvar, y), ref, atol=1e-5
    )


def test_categorical_bound_equals_brute_force_nxnxc():
    gen = torch.Generator().manual_seed(3)
    n, c = 9, 5
    logits = torch.randn(n, c, generator=gen, requires_grad=True)
    labels = torch.randint(c, (n,), generator=gen)
    fast = categorical_club_bound(torch.log_softmax(logits, -1), labels)
    # The reference CLUBForCategorical: repeat the logits N times (N x N x C)
    # and take -CE against every label.
    rep = logits.unsqueeze(1).repeat(1, n, 1)  # [i, j, c]
    lab = labels.unsqueeze(0).repeat(n, 1)  # [i, j] = y_j
    log_mat = -F.cross_entropy(
        rep.reshape(-1, c), lab.reshape(-1), reduction="none"
    ).reshape(n, n)
    brute = log_mat.diagonal().mean() - log_mat.mean()
    assert torch.allclose(fast, brute, atol=1e-6)
    g_fast = torch.autograd.grad(fast, logits)[0]
    g_brute = torch.autograd.grad(brute, logits)[0]
    assert torch.allclose(g_fast, g_brute, atol=1e-6)


def test_categorical_club_module_matches_formula():
    club = CategoricalCLUB(4, 3, hidden=8)
    x, y = torch.randn(6, 4), torch.randint(3, (6,))
    ref = categorical_club_bound(club(x), y)
    assert torch.allclose(club.mi_upper_bound(x, y), ref)
    assert torch.allclose(
        club.learning_loss(x, y), F.cross_entropy(club.net(x), y)
    )


def test_categorical_club_dependent_vs_independent_labels():
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    c, d = 4, 8
    centers = 3 * torch.randn(c, d, generator=gen)

    def batch(n, dependent):
        y = torch.randint(c, (n,), generator=gen)
        x = torch.randn(n, d, generator=gen)
        if dependent:
            x = x + centers[y]
        return x, y

    for dependent in (True, False):
        club = CategoricalCLUB(d, c)
        opt = torch.optim.Adam(club.parameters(), lr=0.05)
        for _ in range(80):
            estimator_step(club, opt, *batch(128, dependent))
        with torch.no_grad():
            est = float(club.mi_upper_bound(*batch(4096, dependent)))
        if dependent:
            assert est > 0.5 * math.log(c)
        else:
            assert abs(est) < 0.05


class _Main(torch.nn.Module):
    """A stand-in for encoder + decoupling block: x -> (x_s, x_d)."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Linear(6, 8)
        self.spk = torch.nn.Linear(8, 4)
        self.dev = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return self.spk(h), self.dev(h)


def _grads_none(module):
    return all(p.grad is None for p in module.parameters())


def _grads_nonzero(module):
    return all(
        p.grad is not None and bool(p.grad.abs().sum() > 0)
        for p in module.parameters()
    )


def test_mi_bound_gives_no_grad_to_estimator_params():
    torch.manual_seed(5)
    main = _Main()
    club_sd = GaussianCLUB(4, 4, hidden=16)
    club_ys = CategoricalCLUB(4, 3)
    x_s, x_d = main(torch.randn(10, 6))
    labels = torch.randint(3, (10,))
    with frozen(club_sd, club_ys):
        assert not club_sd.training
        mi = club_sd.mi_upper_bound(x_s, x_d) + club_ys.mi_upper_bound(
            x_d, labels
        )
    mi.backward()
    assert _grads_nonzero(main)
    assert _grads_none(club_sd) and _grads_none(club_ys)
    # Flags and modes are restored.
    assert all(p.requires_grad for p in club_sd.parameters())
    assert club_sd.training and club_ys.training


def test_frozen_restores_flags_on_error():
    club = GaussianCLUB(2, 2, hidden=4)
    next(club.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in club.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(club):
            raise RuntimeError("boom")
    assert [p.requires_grad for p in club.parameters()] == flags


def test_learning_loss_gives_no_grad_to_main_network():
    torch.manual_seed(6)
    main = _Main()
    club = GaussianCLUB(4, 4, hidden=16)
    opt = torch.optim.SGD(club.parameters(), lr=0.1)
    before = [p.detach().clone() for p in club.parameters()]
    x_s, x_d = main(torch.randn(10, 6))  # attached to main's graph
    estimator_step(club, opt, x_s, x_d, n_steps=3)
    assert _grads_none(main)
    assert any(not torch.equal(a, b) for a, b in zip(before, club.parameters()))


def test_algorithm1_step_updates_each_side_only_with_its_loss():
    """One iteration of Algorithm 1: M estimator steps, then a main step on
    cls + MI. The main step must not move the estimator, the estimator steps
    must not move the main networks."""
    torch.manual_seed(7)
    main = _Main()
    club = GaussianCLUB(4, 4, hidden=16)
    opt_main = torch.optim.SGD(main.parameters(), lr=0.1)
    opt_club = torch.optim.SGD(club.parameters(), lr=0.1)
    x_s, x_d = main(torch.randn(12, 6))

    main_before = [p.detach().clone() for p in main.parameters()]
    estimator_step(club, opt_club, x_s, x_d, n_steps=2)
    assert all(
        torch.equal(a, b) for a, b in zip(main_before, main.parameters())
    )

    club_before = [p.detach().clone() for p in club.parameters()]
    opt_main.zero_grad()
    with frozen(club):
        mi = club.mi_upper_bound(x_s, x_d)
    (x_s.pow(2).mean() + 0.5 * mi).backward()
    opt_main.step()
    # Stepping the estimator's optimizer too (a Brain may step all of them)
    # leaves it unchanged: its parameters have no gradient.
    opt_club.zero_grad(set_to_none=True)
    opt_club.step()
    assert all(
        torch.equal(a, b) for a, b in zip(club_before, club.parameters())
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(main_before, main.parameters())
    )


def test_estimator_step_inside_frozen_raises():
    club = CategoricalCLUB(2, 2)
    opt = torch.optim.SGD(club.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="frozen"):
        with frozen(club):
            estimator_step(
                club, opt, torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
            )


def _fitted_gaussian_bound(club, x_s, x_d, held_s, held_d, lr, steps=150):
    """Refit ``club`` from its initial state on (x_s, x_d); its bound on a
    held-out batch."""
    opt = torch.optim.Adam(club.parameters(), lr=lr)
    for _ in range(steps):
        estimator_step(club, opt, x_s, x_d)
    with torch.no_grad():
        return float(club.mi_upper_bound(held_s, held_d))


def test_gaussian_club_bound_scale_free(tmp_path):
    # The decoupling heads and the Gaussian estimator exactly as the CLUB
    # recipe builds them. Halving the device head's output (what the
    # bound's gradient does to its BatchNorm weights) must not lower the
    # bound the main loss sees: AAM, AP and cosine scoring ignore the scale.
    import copy
    import pathlib

    from speechbrain_ssv.utils.hparams import load_hparams

    yaml = pathlib.Path(__file__).resolve().parents[2] / (
        "recipes/FFSVC/CLUB/hparams/club_minivox.yaml"
    )
    hp = load_hparams(
        str(yaml),
        {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "o")},
    )
    torch.manual_seed(0)
    block = hp["decoupling"].eval()
    # Running statistics of a typical batch, so eval mode is realistic.
    gen = torch.Generator().manual_seed(0)
    emb_dim = block.speaker_head.net[0].in_features
    mix = torch.randn(emb_dim, emb_dim, generator=gen) / emb_dim**0.5
    batches = [torch.randn(256, emb_dim, generator=gen) @ mix for _ in range(3)]
    block.train()
    with torch.no_grad():
        for b in batches:
            block(b)
    block.eval()
    initial = copy.deepcopy(hp["club_s_d"])
    lr = hp["estimator_lr"]

    def bound(device_scale):
        with torch.no_grad():
            (x_s, x_d), (h_s, h_d) = block(batches[0]), block(batches[1])
        return _fitted_gaussian_bound(
            copy.deepcopy(initial),
            x_s,
            device_scale * x_d,
            h_s,
            device_scale * h_d,
            lr,
        )

    full, half = bound(1.0), bound(0.5)
    assert full > 1.0  # the heads share a layer: the bound sees dependence
    assert abs(half / full - 1.0) < 0.05, (full, half)
