"""Clustering metrics (Appendix B), report/plot writers, baselines and
chunked assignment."""

import itertools
import json
import os
import sys

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from speechbrain_ssv.clustering import metrics as cm
from speechbrain_ssv.clustering.baselines import (
    METHODS,
    QUADRATIC_MAX_N,
    assign_chunked,
    cluster,
)
from speechbrain_ssv.clustering.metrics import (
    cluster_accuracy,
    clustering_report,
    plot_metrics_over_epochs,
    purity,
    write_report,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small problems: intra-op threads only add contention on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _brute_force_acc(y, c):
    classes, clusters = sorted(set(y)), sorted(set(c))
    best = 0
    k = max(len(classes), len(clusters))
    cls = classes + [None] * (k - len(classes))
    for perm in itertools.permutations(cls, k):
        mapping = dict(zip(clusters, perm))
        best = max(best, sum(mapping.get(ci) == yi for yi, ci in zip(y, c)))
    return best / len(y)


def test_acc_is_one_for_a_permuted_perfect_labelling():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 30, size=500)
    perm = rng.permutation(30) + 100  # other label values, shuffled
    assert cluster_accuracy(y, perm[y]) == 1.0
    assert purity(y, perm[y]) == 1.0
    r = clustering_report(y, perm[y])
    for key in (
        "acc",
        "nmi",
        "ami",
        "ari",
        "homogeneity",
        "completeness",
        "fmi",
        "purity",
    ):
        assert r[key] == pytest.approx(1.0), key
    assert (
        r["clusters_used"] == 30
        and r["n_classes"] == 30
        and r["n_samples"] == 500
    )


def test_acc_matches_brute_force_with_unequal_numbers_of_clusters():
    rng = np.random.default_rng(1)
    for n_cls, n_clu in [(3, 5), (5, 3), (4, 4)]:
        y = rng.integers(0, n_cls, size=40)
        c = rng.integers(0, n_clu, size=40)
        assert cluster_accuracy(y, c) == pytest.approx(
            _brute_force_acc(list(y), list(c))
        )


def test_sparse_and_dense_hungarian_agree(monkeypatch):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 300, size=3000)
    noisy = np.where(rng.random(3000) < 0.4, rng.integers(0, 450, size=3000), y)
    dense = cluster_accuracy(y, noisy)
    monkeypatch.setattr(cm, "_DENSE_CELLS", 0)  # force the sparse solver
    sparse = cluster_accuracy(y, noisy)
    assert sparse == pytest.approx(dense)
    assert 0.5 < dense < 1.0
    # More classes than clusters on the sparse path too.
    merged = noisy % 100
    monkeypatch.setattr(cm, "_DENSE_CELLS", 10**9)
    dense = cluster_accuracy(y, merged)
    monkeypatch.setattr(cm, "_DENSE_CELLS", 0)
    assert cluster_accuracy(y, merged) == pytest.approx(dense)


def test_contingency_counts_pairs_for_any_label_type():
    rng = np.random.default_rng(5)
    speakers = np.array(["id10001", "id10270", "id11251", "z"])
    y = speakers[rng.integers(0, 4, size=500)]
    c = rng.integers(-3, 40, size=500) * 7  # sparse, negative, gappy ids
    table = cm.contingency(y, torch.as_tensor(c))
    assert table.format == "csr" and table.dtype == np.int64
    rows, cols = np.unique(y), np.unique(c)
    brute = np.array(
        [[np.sum((y == r) & (c == k)) for k in cols] for r in rows]
    )
    np.testing.assert_array_equal(table.toarray(), brute)
    assert table.sum() == 500 and table.nnz == np.count_nonzero(brute)


def test_purity_and_report_against_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, size=300)
    c = np.where(rng.random(300) < 0.3, rng.integers(0, 8, size=300), y)
    table = np.zeros((6, 8))
    np.add.at(table, (y, c), 1)
    assert purity(y, c) == pytest.approx(table.max(axis=0).sum() / 300)
    x = rng.normal(size=(300, 4)) + c[:, None]
    r = clustering_report(y, c, features=x, sample_size=None)
    assert r["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y, c))
    assert r["ami"] == pytest.approx(skm.adjusted_mutual_info_score(y, c))
    assert r["ari"] == pytest.approx(skm.adjusted_rand_score(y, c))
    assert r["fmi"] == pytest.approx(skm.fowlkes_mallows_score(y, c))
    assert r["homogeneity"] == pytest.approx(skm.homogeneity_score(y, c))
    assert r["completeness"] == pytest.approx(skm.completeness_score(y, c))
    assert r["silhouette"] == pytest.approx(skm.silhouette_score(x, c))
    assert r["chs"] == pytest.approx(skm.calinski_harabasz_score(x, c))
    assert r["dbs"] == pytest.approx(skm.davies_bouldin_score(x, c))
    assert r["clusters_used"] == 8
    # Silhouette on a subsample is close; a single cluster leaves it undefined.
    r_sub = clustering_report(y, c, features=x, sample_size=200)
    assert abs(r_sub["silhouette"] - r["silhouette"]) < 0.1
    r_one = clustering_report(y, np.zeros(300, dtype=int), features=x)
    assert r_one["silhouette"] is None and r_one["dbs"] is None
    with pytest.raises(ValueError, match="differ in length"):
        cluster_accuracy(y, c[:-1])


def test_write_report_and_plot(tmp_path):
    y = np.repeat([0, 1, 2], 5)
    reports = {
        "kmeans": clustering_report(y, y),
        "ahc": clustering_report(y, np.roll(y, 1)),
    }
    table = write_report(reports, tmp_path / "r.json", tmp_path / "r.md")
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) == {"kmeans", "ahc"} and data["kmeans"]["acc"] == 1.0
    md = (tmp_path / "r.md").read_text()
    assert md == table and md.count("\n") == 4 and "| kmeans | 1.000 |" in md
    hist = {
        "IMSAT": [dict(clustering_report(y, y), epoch=e) for e in (1, 2, 3)],
        "ours": [
            dict(clustering_report(y, np.roll(y, e)), epoch=e) for e in (1, 2)
        ],
    }
    plot_metrics_over_epochs(hist, tmp_path / "fig3.png")
    assert (tmp_path / "fig3.png").stat().st_size > 1000
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    with pytest.raises(ValueError, match="empty"):
        plot_metrics_over_epochs([], tmp_path / "x.png")


# -- baselines ------------------------------------------------------------------


def _blobs(n_per=40, k=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 6
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(scale=0.4, size=(len(y), d)), y


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
@pytest.mark.parametrize("method", METHODS)
def test_each_baseline_recovers_well_separated_blobs(method):
    x, y = _blobs()
    kwargs = {"threshold": 1.0} if method == "birch" else {}
    labels = cluster(x, method, n_clusters=4, seed=0, **kwargs)
    assert labels.shape == y.shape and labels.dtype == np.int64
    assert cluster_accuracy(y, labels) > 0.95


def test_baselines_with_l2_normalisation_and_fit_subsample():
    x, y = _blobs(n_per=60)
    x = x + 20.0  # keep the blobs apart in direction after l2 normalisation
    labels = cluster(x, "gmm_diag", 4, l2_normalize=True, standardize=True)
    assert cluster_accuracy(y, labels) > 0.95
    # AHC on a subsample, every point assigned to the nearest centroid.
    labels = cluster(x, "ahc", 4, fit_size=60, chunk=17)
    assert cluster_accuracy(y, labels) > 0.95
    labels = cluster(x, "gmm_full", 4, fit_size=80, chunk=17)
    assert cluster_accuracy(y, labels) > 0.95


def test_baselines_refuse_unknown_and_unscalable_configurations():
    x, _ = _blobs()
    with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
        cluster(x, "dbscan", 4)
    big = np.zeros((QUADRATIC_MAX_N + 1, 2), dtype=np.float32)
    for method in ("ahc", "spectral"):
        with pytest.raises(ValueError, match="fit_size.*minibatch_kmeans"):
            cluster(big, method, 10)
    with pytest.raises(ValueError, match="GB.*fit_size"):
        cluster(x, "gmm_full", 4, max_memory_gb=1e-6)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster(x, "kmeans", 1000)


def test_faiss_kmeans_without_faiss_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, _ = _blobs()
    with pytest.raises(ImportError, match=r"speechbrain-ssv\[faiss\]"):
        cluster(x, "faiss_kmeans", 4)


def test_assign_chunked_equals_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 7)).astype(np.float32)
    c = rng.normal(size=(37, 7)).astype(np.float32)
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    for chunk in (1, 64, 999, 5000):
        assert np.array_equal(assign_chunked(x, c, chunk=chunk), brute)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (
        c / np.linalg.norm(c, axis=1, keepdims=True)
    ).T
    assert np.array_equal(
        assign_chunked(x, c, chunk=100, metric="cosine"), cos.argmax(1)
    )
    # Torch inputs stay torch.
    out = assign_chunked(torch.from_numpy(x), torch.from_numpy(c), chunk=128)
    assert isinstance(out, torch.Tensor) and np.array_equal(out.numpy(), brute)
