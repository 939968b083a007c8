"""Cosine scoring and score normalisation against per-trial reference loops
written like SpeechBrain's ``speaker_verification_cosine.py``."""

import numpy as np
import pytest
import torch

from speechbrain_ssv.eval.scoring import (
    cohort_stats,
    cosine_scores,
    l2_normalize,
    normalize_scores,
)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 16, generator=g)
    cohort = torch.randn(50, 16, generator=g)
    rng = np.random.default_rng(0)
    enrol_idx = rng.integers(0, 30, size=200)
    test_idx = rng.integers(0, 30, size=200)
    return emb, cohort, enrol_idx, test_idx


def test_cosine_matches_torch_cosine_similarity(data):
    emb, _, e, t = data
    ref = torch.nn.CosineSimilarity(dim=-1, eps=1e-6)(emb[e], emb[t]).numpy()
    np.testing.assert_allclose(cosine_scores(emb, emb, e, t), ref, atol=1e-6)
    # Chunking must not change anything.
    np.testing.assert_allclose(
        cosine_scores(emb, emb, e, t, chunk_size=7), ref, atol=1e-6
    )


def test_cosine_aligned_rows_and_numpy_input(data):
    emb, cohort, _, _ = data
    a, b = emb[:10].numpy(), cohort[:10].numpy()
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(cosine_scores(a, b), ref, atol=1e-6)


def test_cosine_errors(data):
    emb, _, _, _ = data
    with pytest.raises(ValueError, match="embedding sizes differ"):
        cosine_scores(emb, emb[:, :8], [0], [0])
    with pytest.raises(ValueError, match="differ in length"):
        cosine_scores(emb, emb, [0, 1], [0])


def _reference_norm(score, e, t, cohort, method, topk):
    """SpeechBrain recipe loop, one trial at a time."""
    cos = torch.nn.CosineSimilarity(dim=-1, eps=1e-6)
    k = cohort.shape[0] if topk is None else topk
    se = cos(e[None], cohort).topk(k).values
    st = cos(t[None], cohort).topk(k).values
    z = (score - se.mean()) / se.std()
    tn = (score - st.mean()) / st.std()
    return {"z-norm": z, "t-norm": tn}.get(method, 0.5 * (z + tn))


@pytest.mark.parametrize(
    "method, topk",
    [
        ("z-norm", None),
        ("t-norm", None),
        ("s-norm", None),
        ("s-norm", 10),
        ("as-norm", 10),
    ],
)
def test_normalize_matches_reference(data, method, topk):
    emb, cohort, e, t = data
    raw = cosine_scores(emb, emb, e, t)
    got = normalize_scores(raw, e, t, emb, cohort, method=method, topk=topk)
    ref = [
        float(_reference_norm(float(s), emb[i], emb[j], cohort, method, topk))
        for s, i, j in zip(raw, e, t)
    ]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_as_norm_default_topk_is_capped(data):
    emb, cohort, e, t = data
    raw = cosine_scores(emb, emb, e, t)
    a = normalize_scores(raw, e, t, emb, cohort, method="as-norm")
    b = normalize_scores(raw, e, t, emb, cohort, method="s-norm")
    # 50 < 300: adaptive with the whole cohort is plain s-norm.
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_cohort_stats_chunked_equals_unchunked(data):
    emb, cohort, _, _ = data
    m1, s1 = cohort_stats(emb, cohort, topk=5)
    m2, s2 = cohort_stats(emb, cohort, topk=5, chunk_bytes=1)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(s1, s2)
    full = l2_normalize(emb) @ l2_normalize(cohort).T
    torch.testing.assert_close(m1, full.topk(5, dim=1).values.mean(1))


def test_normalize_errors(data):
    emb, cohort, e, t = data
    with pytest.raises(ValueError, match="unknown score normalisation"):
        normalize_scores(np.zeros(200), e, t, emb, cohort, method="x-norm")
    with pytest.raises(ValueError, match="topk"):
        normalize_scores(np.zeros(200), e, t, emb, cohort, topk=500)
    with pytest.raises(ValueError, match="at least 2"):
        cohort_stats(emb, cohort[:1])
