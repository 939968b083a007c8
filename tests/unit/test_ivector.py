"""i-vector extractor: UBM EM, Baum-Welch statistics, T-matrix EM (with and
without minimum divergence), extraction, streaming and checkpointing."""

import math

import pytest
import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ssv.clustering.ivector import (
    IVectorExtractor,
    TotalVariability,
)
from speechbrain_ssv.clustering.ubm import DiagonalUBM, baum_welch_stats

D, C, R = 4, 4, 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small problems: intra-op threads only add contention on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _corpus(n_spk=6, n_utt=6, n_frames=150, seed=0, dtype=torch.float64):
    """Frames from a fixed 4-component GMM, shifted by a speaker offset
    (shared by the speaker's utterances) and a small per-utterance offset."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(C, D, generator=g, dtype=dtype) * 3
    utts, spk = [], []
    for s in range(n_spk):
        offset = torch.randn(D, generator=g, dtype=dtype) * 1.0
        for _ in range(n_utt):
            comp = torch.randint(0, C, (n_frames,), generator=g)
            chan = torch.randn(D, generator=g, dtype=dtype) * 0.1
            x = means[comp] + offset + chan
            utts.append(
                x + 0.5 * torch.randn(n_frames, D, generator=g, dtype=dtype)
            )
            spk.append(s)
    return utts, torch.tensor(spk)


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


@pytest.fixture(scope="module")
def trained(corpus):
    utts, _ = corpus
    ext = IVectorExtractor(D, n_components=C, rank=R, dtype=torch.float64)
    hist = ext.fit(utts, ubm_iter=6, split_iter=3, tv_iter=6, batch_size=10)
    return ext, hist


def _non_decreasing(values, rel=1e-9):
    return all(b >= a - rel * abs(a) for a, b in zip(values, values[1:]))


def test_ubm_em_never_decreases_the_likelihood(trained):
    _, hist = trained
    for k in {h["n_components"] for h in hist["ubm"]}:
        stage = [
            h["log_likelihood"] for h in hist["ubm"] if h["n_components"] == k
        ]
        assert _non_decreasing(stage), (k, stage)
    assert hist["ubm"][-1]["n_components"] == C
    # More components fit better than one.
    assert hist["ubm"][-1]["log_likelihood"] > hist["ubm"][0]["log_likelihood"]


@pytest.mark.parametrize("min_div", [False, True])
def test_ivector_em_never_decreases_the_likelihood(corpus, min_div):
    utts, _ = corpus
    ext = IVectorExtractor(D, n_components=C, rank=R, dtype=torch.float64)
    ext.fit_ubm(utts, n_iter=4, split_iter=2)
    stats = list(ext.stats_batches(utts, batch_size=7))
    ll = ext.tv.fit(stats, n_iter=8, min_div=min_div)
    assert _non_decreasing(ll), ll
    assert ll[-1] > ll[0]


def test_minimum_divergence_step_does_not_lower_the_likelihood(corpus):
    utts, _ = corpus
    ubm_ext = IVectorExtractor(D, n_components=C, rank=R, dtype=torch.float64)
    ubm_ext.fit_ubm(utts, n_iter=4, split_iter=2)
    stats = list(ubm_ext.stats_batches(utts, batch_size=9))
    after = {}
    for min_div in (False, True):
        tv = TotalVariability(C, D, R, seed=3, dtype=torch.float64)
        tv.em_step(stats, min_div=min_div)
        after[min_div] = tv.em_step(stats, min_div=False)
        if min_div:
            assert tv.offset.abs().sum() > 0
    # min-div is an extra M-step (the prior) followed by a reparametrisation.
    assert after[True] >= after[False] - 1e-9 * abs(after[False])


def test_extraction_equals_the_posterior_mean_formula():
    g = torch.Generator().manual_seed(0)
    tv = TotalVariability(3, 2, 2, seed=1, dtype=torch.float64)
    tv.offset.copy_(torch.randn(3, 2, generator=g, dtype=torch.float64))
    n = torch.rand(3, generator=g, dtype=torch.float64) * 20
    f = torch.randn(3, 2, generator=g, dtype=torch.float64) * 3
    prec = torch.eye(2, dtype=torch.float64)
    b = torch.zeros(2, dtype=torch.float64)
    for c in range(3):
        t_c = tv.T[c]
        prec += n[c] * t_c.t() @ t_c
        b += t_c.t() @ (f[c] - n[c] * tv.offset[c])
    assert torch.allclose(tv.extract(n, f)[0], torch.linalg.solve(prec, b))


def test_baum_welch_statistics_match_a_loop():
    g = torch.Generator().manual_seed(0)
    ubm = DiagonalUBM(3, 2, dtype=torch.float64)
    ubm.weights.copy_(torch.tensor([0.2, 0.5, 0.3]))
    ubm.means.copy_(torch.randn(3, 2, generator=g, dtype=torch.float64))
    ubm.variances.copy_(
        torch.rand(3, 2, generator=g, dtype=torch.float64) + 0.5
    )
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    n, f = baum_welch_stats(ubm, x)
    n_ref, f_ref = (
        torch.zeros(3, dtype=torch.float64),
        torch.zeros(3, 2, dtype=torch.float64),
    )
    for t in range(20):
        lik = torch.tensor(
            [
                ubm.weights[c]
                * torch.prod(
                    torch.exp(
                        -0.5 * (x[t] - ubm.means[c]) ** 2 / ubm.variances[c]
                    )
                    / torch.sqrt(2 * math.pi * ubm.variances[c])
                )
                for c in range(3)
            ],
            dtype=torch.float64,
        )
        post = lik / lik.sum()
        n_ref += post
        f_ref += post[:, None] * (x[t][None] - ubm.means)
    assert torch.allclose(n, n_ref) and torch.allclose(f, f_ref)
    _, fw = baum_welch_stats(ubm, x, whiten=True)
    assert torch.allclose(fw, f_ref / ubm.variances.sqrt())
    assert math.isclose(float(n.sum()), 20.0, rel_tol=1e-12)


def test_ivectors_cluster_by_speaker(trained, corpus):
    ext, _ = trained
    utts, spk = corpus
    iv = ext.extract(iter(utts), batch_size=8)  # one pass: a generator is fine
    assert iv.shape == (len(utts), R) and iv.dtype == torch.float32
    iv = F.normalize(iv - iv.mean(0), dim=1)
    cos = iv @ iv.t()
    same = spk[:, None] == spk[None, :]
    off_diag = ~torch.eye(len(spk), dtype=torch.bool)
    assert cos[same & off_diag].mean() > cos[~same].mean() + 0.5
    nearest = cos.masked_fill(~off_diag, -2).argmax(1)
    assert (spk[nearest] == spk).float().mean() >= 0.9


def test_checkpoint_round_trip_gives_identical_ivectors(
    trained, corpus, tmp_path
):
    ext, _ = trained
    utts, _ = corpus
    ref = ext.extract(utts[:10])
    Checkpointer(tmp_path, recoverables={"ivector": ext}).save_checkpoint()
    fresh = IVectorExtractor(
        D, n_components=C, rank=R, dtype=torch.float64, seed=99
    )
    assert not torch.equal(fresh.extract(utts[:10]), ref)
    Checkpointer(
        tmp_path, recoverables={"ivector": fresh}
    ).recover_if_possible()
    assert torch.equal(fresh.extract(utts[:10]), ref)
    # Single-utterance forward agrees with the batched extraction.
    assert torch.allclose(fresh(utts[0]).float(), ref[0])


def test_streaming_inputs_and_stats_cache(corpus, tmp_path):
    utts, _ = corpus
    with pytest.raises(ValueError, match="one-shot iterator"):
        IVectorExtractor(D, C, R).fit_ubm(iter(utts))
    a = IVectorExtractor(D, n_components=C, rank=R, dtype=torch.float64)
    a.fit_ubm(lambda: iter(utts), n_iter=2, split_iter=1, frames_per_batch=333)
    b = IVectorExtractor(D, n_components=C, rank=R, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    ll_a = a.fit_tv(utts, n_iter=2, batch_size=8)
    ll_b = b.fit_tv(
        utts, n_iter=2, batch_size=8, cache_dir=str(tmp_path / "stats")
    )
    assert len(list((tmp_path / "stats").iterdir())) == math.ceil(len(utts) / 8)
    assert ll_a == pytest.approx(ll_b, rel=1e-12)
    assert torch.allclose(a.tv.T, b.tv.T)
    with pytest.raises(ValueError, match=r"\[T, 4\]"):
        a.extract([torch.zeros(10, 3)])


def test_float32_default_and_400_dim_default():
    ext = IVectorExtractor(feat_dim=3, n_components=2)
    assert ext.rank == 400 and ext.tv.T.dtype == torch.float32
    utts, _ = _corpus(n_spk=2, n_utt=3, n_frames=50, dtype=torch.float32)
    utts = [u[:, :3] for u in utts]
    ext.fit_ubm(utts, n_iter=2, split_iter=1)
    iv = ext.extract(utts)
    assert iv.shape == (6, 400) and torch.isfinite(iv).all()
