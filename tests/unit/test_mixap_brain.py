"""MixAPBrain's objective: the optional AP term next to i-AP / l-AP
(``ap_weight``) and its routing of the unmixed queries."""

import pytest
import speechbrain as sb
import torch
from speechbrain.lobes.features import MFCC
from speechbrain.processing.features import InputNormalization

from speechbrain_ssv.brains.mixap import MixAPBrain
from speechbrain_ssv.lobes.heads import AngularScale
from speechbrain_ssv.losses.common import angular_prototypical_loss
from speechbrain_ssv.losses.mixap import imix_loss
from speechbrain_ssv.utils.errors import HparamsError


def _brain(method, ap_weight=None):
    hparams = {"method": method, "gather_negatives": True, "wav_augment": None}
    if ap_weight is not None:
        hparams["ap_weight"] = ap_weight
    modules = {"ap_scale": AngularScale(init_scale=10.0, init_bias=-5.0)}
    return MixAPBrain(
        modules=modules, hparams=hparams, run_opts={"device": "cpu"}
    )


def _predictions(b=6, d=8, clean=True):
    g = torch.Generator().manual_seed(0)
    pred = {
        "query": torch.randn(b, d, generator=g),
        "anchor": torch.randn(b, d, generator=g),
        "partner": torch.roll(torch.arange(b), 1),
        "lam": torch.rand(b, generator=g),
    }
    if clean:
        pred["clean_query"] = torch.randn(b, d, generator=g)
    return pred


def test_ap_weight_adds_plain_ap_of_the_clean_queries():
    # The objective is the same for l-AP (only the queries' origin
    # differs, see the forward test below).
    brain = _brain("imix", ap_weight=0.5)
    pred = _predictions()
    scale = brain.modules.ap_scale
    mixed = imix_loss(
        scale(pred["query"], pred["anchor"]), pred["partner"], pred["lam"]
    )
    plain = angular_prototypical_loss(
        scale(pred["clean_query"], pred["anchor"])
    )
    loss = brain.compute_objectives(pred, None, "TEST")
    assert torch.allclose(loss, mixed + 0.5 * plain)


def test_zero_ap_weight_is_the_papers_objective():
    brain = _brain("imix", ap_weight=0.0)
    pred = _predictions(clean=False)
    scale = brain.modules.ap_scale
    mixed = imix_loss(
        scale(pred["query"], pred["anchor"]), pred["partner"], pred["lam"]
    )
    assert torch.allclose(brain.compute_objectives(pred, None, "TEST"), mixed)
    assert brain._ap_weight() == 0.0


def test_method_settings_are_required():
    """i-AP reads ap_weight: a yaml without it is one error naming the key
    (no code default); plain AP does not read it."""
    with pytest.raises(HparamsError, match="ap_weight: missing; method 'imix'"):
        _brain("imix")
    assert _brain("ap")._ap_weight() == 0.0


def test_ap_weight_is_ignored_for_plain_ap_and_refused_negative():
    assert _brain("ap", ap_weight=1.0)._ap_weight() == 0.0
    with pytest.raises(ValueError, match="ap_weight=-1.0"):
        _brain("imix", ap_weight=-1.0)._ap_weight()


class _MeanPool(torch.nn.Module):
    """An 'encoder' whose embedding is the time average of its input, so
    the test can tell which features were embedded."""

    def forward(self, feats, lens=None):
        return feats.mean(1, keepdim=True)


class _Batch:
    def __init__(self, view0, view1):
        self.view0, self.view1 = view0, view1

    def to(self, device):
        return self


@pytest.mark.parametrize("ap_weight", [0.0, 1.0])
def test_forward_embeds_unmixed_queries_only_when_weighted(ap_weight):
    torch.manual_seed(0)
    n_frames, b = 20, 4
    modules = {
        "compute_features": MFCC(
            n_mfcc=12, n_mels=12, deltas=False, context=False
        ),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": _MeanPool(),
        "ap_scale": AngularScale(),
    }
    hparams = {
        "method": "imix",
        "mix_alpha": 1.0,
        "per_sample_lambda": True,
        "fold_lambda": False,
        "n_frames": n_frames,
        "ap_weight": ap_weight,
        "wav_augment": None,
        # every MixAP yaml names both (null: no cepsaugment)
        "time_mask": None,
        "ceps_mask": None,
    }
    brain = MixAPBrain(
        modules=modules, hparams=hparams, run_opts={"device": "cpu"}
    )
    wavs = [torch.randn(b, 4000) for _ in range(2)]
    lens = torch.ones(b)
    batch = _Batch((wavs[0], lens), (wavs[1], lens))
    pred = brain.compute_forward(batch, sb.Stage.TRAIN)
    clean = brain._segment_features(wavs[0], lens, None).mean(1)
    anchor = brain._segment_features(wavs[1], lens, None).mean(1)
    assert torch.allclose(pred["anchor"], anchor, atol=1e-5)
    assert ("clean_query" in pred) == (ap_weight > 0)
    if ap_weight > 0:
        assert torch.allclose(pred["clean_query"], clean, atol=1e-5)
    lam = pred["lam"][:, None]
    mixed = lam * clean + (1 - lam) * clean[pred["partner"]]
    assert torch.allclose(pred["query"], mixed, atol=1e-5)
    # Evaluation never embeds extra queries.
    assert "clean_query" not in brain.compute_forward(batch, sb.Stage.VALID)
