"""INSIDE pair selection: gender metadata, speaker means, chunked and IVF
nearest neighbours against brute force, the layered traversal (INSIDE-NN)
and random within-gender pairs (INSIDE-Syn)."""

import importlib.util
import logging
import math
import sys

import numpy as np
import pytest
import torch

from speechbrain_ssv.inside.gender import speaker_genders
from speechbrain_ssv.inside.neighbours import nearest_neighbours
from speechbrain_ssv.inside.pairing import (
    SpeakerPair,
    allocate_pairs,
    layered_nn_pairs,
    random_pairs,
    speaker_means,
    summarize_pairs,
)
from speechbrain_ssv.utils.errors import SSVInputError

torch.set_num_threads(1)

HAS_FAISS = importlib.util.find_spec("faiss") is not None
BACKENDS = [
    "torch",
    pytest.param(
        "faiss",
        marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed"),
    ),
]


def _brute_force(x, k, exclude_self=True):
    """Full N x N matrix, stable sort: lower index first on ties."""
    x = x.double() / x.double().norm(dim=1, keepdim=True)
    sims = x @ x.T
    if exclude_self:
        sims.fill_diagonal_(-math.inf)
    order = sims.argsort(dim=1, descending=True, stable=True)[:, :k]
    return order, sims.gather(1, order)


def _clustered(n, dim, n_clusters, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g)
    labels = torch.randint(n_clusters, (n,), generator=g)
    return centres[labels] + spread * torch.randn(n, dim, generator=g)


# ---------------------------------------------------------------- genders


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_genders_from_vox1_tab_separated_meta(tmp_path):
    p = _write(
        tmp_path / "vox1_meta.csv",
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
        "id10002\tA.R._Rahman\tm\tIndia\tdev\n"
        "id10003\tAaron_Tveit\tf\tUSA\ttest\n",
    )
    assert speaker_genders(p) == {
        "id10001": "m",
        "id10002": "m",
        "id10003": "f",
    }


def test_genders_from_vox2_comma_meta_with_spaces(tmp_path):
    p = _write(
        tmp_path / "vox2_meta.csv",
        "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n"
        "id00012 ,n000012 ,m ,dev \n"
        "id00015 ,n000015 ,F ,test \n",
    )
    assert speaker_genders(p) == {"id00012": "m", "id00015": "f"}


def test_genders_from_manifest_and_several_files(tmp_path):
    manifest = _write(
        tmp_path / "train.csv",
        "ID,duration,wav,start,stop,spk_id,session,gender\n"
        "id1/s/1,3.0,/a.wav,0,1,id1,s,female\n"
        "id1/s/2,3.0,/b.wav,0,1,id1,s,F\n"
        "id2/s/1,3.0,/c.wav,0,1,id2,s,M\n",
    )
    meta = _write(
        tmp_path / "vox2_meta.csv",
        "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \nid3 ,n3 ,m ,dev \n",
    )
    assert speaker_genders([manifest, meta]) == {
        "id1": "f",
        "id2": "m",
        "id3": "m",
    }


def test_unknown_genders_are_excluded_and_counted(tmp_path, caplog):
    p = _write(
        tmp_path / "train.csv",
        "ID,duration,wav,start,stop,spk_id,gender\n"
        "a/s/1,3,/a.wav,0,1,a,u\n"
        "b/s/1,3,/b.wav,0,1,b,m\n"
        "b/s/2,3,/b2.wav,0,1,b,u\n"
        "c/s/1,3,/c.wav,0,1,c,\n",
    )
    with caplog.at_level(logging.WARNING):
        assert speaker_genders(p) == {"b": "m"}
    assert "2 of 3 speakers" in caplog.text


def test_conflicting_genders_name_the_file(tmp_path):
    p = _write(
        tmp_path / "train.csv",
        "ID,duration,wav,start,stop,spk_id,gender\n"
        "a/s/1,3,/a.wav,0,1,a,m\n"
        "a/s/2,3,/b.wav,0,1,a,f\n",
    )
    with pytest.raises(SSVInputError, match=r"train\.csv:3.*'a'"):
        speaker_genders(p)
    other = _write(
        tmp_path / "vox1_meta.csv",
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "a\tX\tf\tUK\tdev\n",
    )
    ok = _write(
        tmp_path / "ok.csv",
        "ID,duration,wav,start,stop,spk_id,gender\nx,3,/w,0,1,a,m\n",
    )
    with pytest.raises(SSVInputError, match=r"vox1_meta\.csv:2.*ok\.csv:2"):
        speaker_genders([ok, other])


def test_gender_file_errors(tmp_path):
    p = _write(tmp_path / "x.csv", "ID,spk_id\nu,a\n")
    with pytest.raises(SSVInputError, match="lacks a speaker or gender"):
        speaker_genders(p)
    p = _write(tmp_path / "y.csv", "spk_id,gender\na,u\nb,?\n")
    with pytest.raises(SSVInputError, match="no speaker has a known gender"):
        speaker_genders(p)
    with pytest.raises(SSVInputError, match="not found"):
        speaker_genders(str(tmp_path / "absent.csv"))


# ---------------------------------------------------------- speaker means


def test_speaker_means_normalise_utterances_then_mean():
    e = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0], [2.0, 2.0]])
    spks, means = speaker_means(e, ["y", "y", "x", "x"])
    assert spks == ["x", "y"]
    c = 1 / math.sqrt(2)
    assert torch.allclose(means, torch.tensor([[c, c], [c, c]]))
    # Without per-utterance normalisation the larger vector dominates.
    _, raw = speaker_means(e, ["y", "y", "x", "x"], normalize_utterances=False)
    assert raw[1, 0] > 0.98


def test_speaker_means_reject_nan_rows():
    e = torch.ones(3, 4)
    e[1] = float("nan")
    with pytest.raises(SSVInputError, match=r"\(1, 'b'\)"):
        speaker_means(e, ["a", "b", "c"])


# ----------------------------------------------------- nearest neighbours


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 200])
def test_chunked_exact_search_equals_brute_force(chunk_size):
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    idx, sim = nearest_neighbours(x, k=5, chunk_size=chunk_size)
    ref_idx, ref_sim = _brute_force(x, 5)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(sim.double(), ref_sim, atol=1e-5)


def test_exact_search_without_self_exclusion_and_subset_of_queries():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(4))
    idx, sim = nearest_neighbours(x, k=3, exclude_self=False, chunk_size=9)
    assert torch.equal(idx[:, 0], torch.arange(50))
    assert torch.allclose(sim[:, 0], torch.ones(50))
    q = [49, 3, 17]
    sub_idx, _ = nearest_neighbours(x, k=4, query_indices=q, chunk_size=2)
    assert torch.equal(sub_idx, _brute_force(x, 4)[0][q])


def test_ties_prefer_lower_indices_whatever_the_chunking():
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    for chunk in (1, 3, None):
        idx, sim = nearest_neighbours(e, k=2, chunk_size=chunk)
        assert idx.tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]
        idx1, _ = nearest_neighbours(e, k=1, chunk_size=chunk)
        assert idx1.reshape(-1).tolist() == [1, 0, 0, 0]


def test_massive_ties_match_the_stable_brute_force():
    # One-hot rows: every cosine is exactly 0 or 1, so almost every cut
    # falls inside a block of equal values.
    g = torch.Generator().manual_seed(8)
    x = torch.eye(4)[torch.randint(4, (700,), generator=g)]
    ref_idx, _ = _brute_force(x, 9)
    for chunk in (None, 13, 700):
        idx, _ = nearest_neighbours(x, k=9, chunk_size=chunk)
        assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ivf_search_has_high_recall_on_clustered_data(backend):
    x = _clustered(4000, 32, 80, 0.4, seed=5)
    ref_idx, _ = _brute_force(x, 5)
    idx, sim = nearest_neighbours(x, k=5, mode="ivf", seed=0, backend=backend)
    hits = sum(
        len(set(a) & set(b)) for a, b in zip(idx.tolist(), ref_idx.tolist())
    )
    assert hits / ref_idx.numel() > 0.95
    # Returned similarities are the true cosines of the returned rows, no
    # row is its own neighbour, and rows are sorted.
    xn = x / x.norm(dim=1, keepdim=True)
    true = (xn[:, None, :] * xn[idx]).sum(-1)
    assert torch.allclose(sim, true, atol=1e-5)
    assert not (idx == torch.arange(4000)[:, None]).any()
    assert (sim[:, :-1] >= sim[:, 1:]).all()
    again, _ = nearest_neighbours(x, k=5, mode="ivf", seed=0, backend=backend)
    assert torch.equal(idx, again)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ivf_scanning_every_list_is_exact(backend):
    x = torch.randn(300, 12, generator=torch.Generator().manual_seed(6))
    idx, sim = nearest_neighbours(
        x, k=4, mode="ivf", n_lists=10, n_probe=10, backend=backend
    )
    assert torch.equal(idx, _brute_force(x, 4)[0])
    # Tiny lists: rows whose scanned lists are short fall back to exact.
    idx, _ = nearest_neighbours(
        x,
        k=20,
        mode="ivf",
        n_lists=150,
        n_probe=1,
        query_indices=[5, 6],
        backend=backend,
    )
    assert torch.equal(idx, _brute_force(x, 20)[0][[5, 6]])


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_exact_search_equals_brute_force():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    ref_idx, ref_sim = _brute_force(x, 5)
    for chunk, exclude in ((None, True), (7, True), (None, False)):
        idx, sim = nearest_neighbours(
            x, k=5, chunk_size=chunk, exclude_self=exclude, backend="faiss"
        )
        want_idx, want_sim = _brute_force(x, 5, exclude_self=exclude)
        assert torch.equal(idx, want_idx)
        assert torch.allclose(sim.double(), want_sim, atol=1e-5)
    q = [49, 3, 17]
    sub, _ = nearest_neighbours(x, k=4, query_indices=q, backend="faiss")
    assert torch.equal(sub, ref_idx[q, :4])


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_and_torch_ivf_agree_and_auto_picks_faiss(monkeypatch):
    import speechbrain_ssv.inside.neighbours as neighbours

    x = _clustered(3000, 32, 60, 0.4, seed=9)
    ref_idx, _ = _brute_force(x, 10)
    ref = [set(r) for r in ref_idx.tolist()]

    def recall(idx):
        found = sum(len(set(a) & b) for a, b in zip(idx.tolist(), ref))
        return found / ref_idx.numel()

    calls = []
    real = neighbours._faiss_search
    monkeypatch.setattr(
        neighbours,
        "_faiss_search",
        lambda *a, **kw: calls.append(a[5]) or real(*a, **kw),
    )
    by_faiss, _ = nearest_neighbours(x, k=10, mode="ivf", n_probe=4)
    by_torch, _ = nearest_neighbours(
        x, k=10, mode="ivf", n_probe=4, backend="torch"
    )
    # auto: faiss for IVF, the torch reference for exact search.
    nearest_neighbours(x[:50], k=3)
    assert calls == ["ivf"]
    assert recall(by_faiss) > 0.95 and recall(by_torch) > 0.95
    same = (by_faiss[:, 0] == by_torch[:, 0]).float().mean()
    assert same > 0.95


def test_auto_backend_falls_back_to_torch_without_faiss(monkeypatch):
    x = _clustered(1500, 16, 30, 0.4, seed=2)
    torch_idx, torch_sim = nearest_neighbours(
        x, k=5, mode="ivf", backend="torch"
    )
    monkeypatch.setitem(sys.modules, "faiss", None)
    idx, sim = nearest_neighbours(x, k=5, mode="ivf")
    assert torch.equal(idx, torch_idx) and torch.equal(sim, torch_sim)
    with pytest.raises(ImportError, match=r"speechbrain-ssv\[faiss\]"):
        nearest_neighbours(x, k=5, mode="ivf", backend="faiss")
    with pytest.raises(SSVInputError, match="backend"):
        nearest_neighbours(x, k=5, backend="annoy")


def test_nearest_neighbour_argument_errors():
    x = torch.randn(5, 3)
    with pytest.raises(SSVInputError, match="1 <= k <= 4"):
        nearest_neighbours(x, k=5)
    with pytest.raises(SSVInputError, match="mode"):
        nearest_neighbours(x, k=1, mode="hnsw")
    with pytest.raises(SSVInputError, match="query_indices"):
        nearest_neighbours(x, k=1, query_indices=[5])
    with pytest.raises(SSVInputError, match="rows are zero"):
        nearest_neighbours(torch.zeros(3, 2), k=1)


# ---------------------------------------------------------------- pairing


def test_allocate_pairs_proportional_capped_and_exhaustive():
    assert allocate_pairs(10, {"f": 30, "m": 70}) == {"f": 3, "m": 7}
    assert allocate_pairs(7, {"f": 50, "m": 50}) == {"f": 4, "m": 3}
    assert allocate_pairs(12, {"f": 3, "m": 5}) == {"f": 3, "m": 9}
    assert allocate_pairs(13, {"f": 3, "m": 5, "x": 1}) == {
        "f": 3,
        "m": 10,
        "x": 0,
    }
    with pytest.raises(SSVInputError, match="only 13 distinct"):
        allocate_pairs(14, {"f": 3, "m": 5, "x": 1})


def _speakers(n_m, n_f, dim, seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n_m + n_f, dim, generator=g)
    perm = torch.randperm(n_m + n_f, generator=g).tolist()
    genders = ["m"] * n_m + ["f"] * n_f
    genders = [genders[i] for i in perm]
    speakers = [f"id{i:05d}" for i in range(n_m + n_f)]
    return emb, speakers, dict(zip(speakers, genders))


def _check_constraints(pairs, genders, n_pairs):
    assert len(pairs) == n_pairs
    keys = [frozenset((p.spk_a, p.spk_b)) for p in pairs]
    assert all(len(k) == 2 for k in keys), "self pair"
    assert len(set(keys)) == len(keys), "repeated pair"
    for p in pairs:
        assert genders[p.spk_a] == genders[p.spk_b] == p.gender


def _rank_of(emb, speakers, genders, a, b):
    """1-based neighbour rank of b among a's same-gender speakers."""
    group = [s for s in speakers if genders[s] == genders[a]]
    x = emb[[speakers.index(s) for s in group]]
    order, _ = _brute_force(x, len(group) - 1)
    row = order[group.index(a)].tolist()
    return row.index(group.index(b)) + 1


@pytest.mark.parametrize(
    "n_m,n_f,n_pairs",
    [(5, 3, 1), (5, 3, 13), (20, 13, 40), (40, 25, 300), (9, 0, 36)],
)
def test_layered_pairs_constraints(n_m, n_f, n_pairs):
    emb, speakers, genders = _speakers(n_m, n_f, 8, seed=n_m * 100 + n_f)
    pairs = layered_nn_pairs(emb, speakers, genders, n_pairs, chunk_size=7)
    _check_constraints(pairs, genders, n_pairs)
    sizes = {"m": n_m, "f": n_f}
    expected = allocate_pairs(n_pairs, {g: n for g, n in sizes.items() if n})
    for g, count in expected.items():
        assert sum(p.gender == g for p in pairs) == count
    layers = [p.layer for p in pairs]
    assert layers == sorted(layers) and layers[0] == 1
    for p in pairs:
        assert _rank_of(emb, speakers, genders, p.spk_a, p.spk_b) == p.layer
        xa, xb = emb[speakers.index(p.spk_a)], emb[speakers.index(p.spk_b)]
        cos = float(torch.nn.functional.cosine_similarity(xa, xb, dim=0))
        assert math.isclose(p.cosine, cos, abs_tol=1e-6)


def test_first_layer_is_every_speaker_with_its_nearest():
    emb, speakers, genders = _speakers(30, 21, 6, seed=11)
    layer1 = {}
    for g in ("m", "f"):
        group = [s for s in speakers if genders[s] == g]
        x = emb[[speakers.index(s) for s in group]]
        nn1 = _brute_force(x, 1)[0][:, 0].tolist()
        layer1[g] = {frozenset((group[i], group[j])) for i, j in enumerate(nn1)}
    n_pairs = len(layer1["m"]) + len(layer1["f"])
    pairs = layered_nn_pairs(emb, speakers, genders, n_pairs)
    quota = allocate_pairs(n_pairs, {"m": 30, "f": 21})
    for g in ("m", "f"):
        got = {frozenset((p.spk_a, p.spk_b)) for p in pairs if p.gender == g}
        first = {
            frozenset((p.spk_a, p.spk_b))
            for p in pairs
            if p.gender == g and p.layer == 1
        }
        # Layer 1 is used up before layer 2 starts.
        assert first <= layer1[g]
        assert len(first) == min(quota[g], len(layer1[g]))
        if quota[g] >= len(layer1[g]):
            assert first == layer1[g] and got >= layer1[g]
    # Every speaker takes part once layer 1 is complete in its group.
    big = layered_nn_pairs(emb, speakers, genders, 200)
    assert {s for p in big for s in (p.spk_a, p.spk_b)} == set(speakers)


def test_single_gender_complete_layer_and_cut_by_similarity():
    emb, speakers, _ = _speakers(25, 0, 5, seed=12)
    genders = dict.fromkeys(speakers, "f")
    x = emb / emb.norm(dim=1, keepdim=True)
    nn1 = _brute_force(emb, 1)[0][:, 0].tolist()
    layer1 = {frozenset((speakers[i], speakers[j])) for i, j in enumerate(nn1)}
    full = layered_nn_pairs(emb, speakers, genders, len(layer1))
    assert {frozenset((p.spk_a, p.spk_b)) for p in full} == layer1
    assert all(p.layer == 1 for p in full)
    # Cutting the layer keeps its most similar pairs, closest first.
    cut = layered_nn_pairs(emb, speakers, genders, 4)
    by_cos = sorted(
        layer1,
        key=lambda k: (
            -float(x[speakers.index(min(k))] @ x[speakers.index(max(k))])
        ),
    )
    assert [frozenset((p.spk_a, p.spk_b)) for p in cut] == by_cos[:4]
    # Asking for every pair walks all layers.
    everything = layered_nn_pairs(emb, speakers, genders, 25 * 24 // 2)
    assert max(p.layer for p in everything) <= 24
    _check_constraints(everything, genders, 300)


def test_layered_pairs_do_not_depend_on_input_order():
    emb, speakers, genders = _speakers(15, 12, 6, seed=13)
    pairs = layered_nn_pairs(emb, speakers, genders, 30)
    perm = torch.randperm(27, generator=torch.Generator().manual_seed(0))
    shuffled = layered_nn_pairs(
        emb[perm], [speakers[i] for i in perm], genders, 30
    )
    assert pairs == shuffled


def test_layered_pairs_with_ivf_search():
    x = _clustered(1500, 16, 40, 0.3, seed=14)
    speakers = [f"s{i}" for i in range(1500)]
    genders = ["m" if i % 3 else "f" for i in range(1500)]
    gmap = dict(zip(speakers, genders))
    pairs = layered_nn_pairs(x, speakers, genders, 2500, mode="ivf")
    _check_constraints(pairs, gmap, 2500)
    assert max(p.layer for p in pairs) >= 2
    exact = layered_nn_pairs(x, speakers, genders, 2500)
    same = {frozenset((p.spk_a, p.spk_b)) for p in pairs} & {
        frozenset((p.spk_a, p.spk_b)) for p in exact
    }
    assert len(same) > 0.9 * 2500


def test_layered_pairs_errors_and_unknown_genders(caplog):
    emb, speakers, genders = _speakers(4, 3, 4, seed=15)
    with pytest.raises(SSVInputError, match="only 9 distinct"):
        layered_nn_pairs(emb, speakers, genders, 10)
    genders = dict(genders)
    genders[speakers[0]] = "u"
    with caplog.at_level(logging.WARNING):
        pairs = layered_nn_pairs(emb, speakers, genders, 3)
    assert "1 of 7 speakers have no known gender" in caplog.text
    assert all(speakers[0] not in (p.spk_a, p.spk_b) for p in pairs)
    with pytest.raises(SSVInputError, match="duplicates"):
        layered_nn_pairs(emb[:2], ["a", "a"], "mm", 1)


def test_summarize_pairs():
    pairs = [
        SpeakerPair("a", "b", "m", 1, 0.9),
        SpeakerPair("c", "d", "m", 1, 0.5),
        SpeakerPair("e", "f", "f", 2, 0.4),
    ]
    stats = summarize_pairs(pairs)
    assert stats["m/1"] == {
        "n": 2,
        "cos_mean": 0.7,
        "cos_min": 0.5,
        "cos_max": 0.9,
    }
    assert stats["f/2"]["n"] == 1


# ------------------------------------------------------------ random pairs


@pytest.mark.parametrize(
    "n_m,n_f,n_pairs", [(5, 3, 13), (30, 20, 50), (30, 20, 600), (3, 2, 4)]
)
def test_random_pairs_constraints(n_m, n_f, n_pairs):
    _, speakers, genders = _speakers(n_m, n_f, 2, seed=n_m + n_f)
    pairs = random_pairs(speakers, genders, n_pairs, seed=1)
    _check_constraints(pairs, genders, n_pairs)
    assert all(p.layer == 0 and math.isnan(p.cosine) for p in pairs)
    expected = allocate_pairs(n_pairs, {"m": n_m, "f": n_f})
    for g, count in expected.items():
        assert sum(p.gender == g for p in pairs) == count


def test_random_pairs_deterministic_by_seed_and_order_free():
    _, speakers, genders = _speakers(40, 30, 2, seed=2)
    a = random_pairs(speakers, genders, 100, seed=5)
    assert a == random_pairs(speakers, genders, 100, seed=5)
    assert a == random_pairs(speakers[::-1], genders, 100, seed=5)
    assert a != random_pairs(speakers, genders, 100, seed=6)


def test_random_pairs_cover_all_pairs_uniformly():
    speakers = list("abcde")
    counts = {}
    for seed in range(400):
        for p in random_pairs(speakers, "fffff", 3, seed=seed):
            key = frozenset((p.spk_a, p.spk_b))
            counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 10
    # 1200 draws over 10 pairs: 120 each on average.
    assert min(counts.values()) > 80 and max(counts.values()) < 160


def test_random_pairs_scale_without_quadratic_memory():
    speakers = [f"s{i}" for i in range(300_000)]
    genders = np.where(np.arange(300_000) % 2 == 0, "m", "f").tolist()
    pairs = random_pairs(speakers, genders, 5000, seed=0)
    assert len({frozenset((p.spk_a, p.spk_b)) for p in pairs}) == 5000


def test_random_pairs_with_embeddings_fill_cosines():
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    pairs = random_pairs(["a", "b", "c"], "mmm", 3, seed=0, embeddings=emb)
    cos = {frozenset((p.spk_a, p.spk_b)): p.cosine for p in pairs}
    assert math.isclose(cos[frozenset("ab")], 0.0, abs_tol=1e-12)
    assert math.isclose(cos[frozenset("ac")], 1 / math.sqrt(2))
