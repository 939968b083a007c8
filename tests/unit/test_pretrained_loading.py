"""The one strict loader of pretrained weights
(:mod:`speechbrain_ssv.utils.pretrained`) and the three places that load
pretrained weights through it: the CLUB front-end, the exported VAE of l-AP
and the pseudo-label recipe's start from the previous round."""

import argparse
import importlib.util
import logging
import os

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.parameter_transfer import Pretrainer

from speechbrain_ssv.brains.club_setup import load_pretrained_frontend
from speechbrain_ssv.brains.vae import export_vae, load_exported_vae
from speechbrain_ssv.lobes.vae import ConvVAE
from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.pretrained import (
    PretrainedWeightsError,
    load_strict,
    read_state_dict,
    strict_pretrainer,
)

RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "..", "recipes", "VoxCeleb", "PseudoLabel"
)


def _pseudolabel_recipe():
    """The pseudo-label recipe's train.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "pseudolabel_train_loading", os.path.join(RECIPE, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PSEUDOLABEL = _pseudolabel_recipe()


def _encoder(width=6):
    """A small encoder with an integer buffer (BatchNorm's counter, which
    pretraining leaves non-zero and a fresh model at zero)."""
    return torch.nn.Sequential(
        torch.nn.Linear(4, width), torch.nn.BatchNorm1d(width)
    )


def _vae(channels=(4, 8)):
    return ConvVAE(n_feats=12, n_frames=30, latent_dim=8, channels=channels)


# Each call site: (how it loads, a model factory taking a size, the error
# it raises and what that error must name besides the file).
CALL_SITES = {
    "club_frontend": (
        load_pretrained_frontend,
        lambda big: _encoder(8 if big else 6),
        HparamsError,
        "pretrained_frontend",
    ),
    "exported_vae": (
        load_exported_vae,
        lambda big: _vae((4, 6) if big else (4, 8)),
        ValueError,
        "ConvVAE",
    ),
    "pseudolabel_round": (
        lambda model, path: PSEUDOLABEL.init_from_previous_round(
            model, path, 2
        ),
        lambda big: _encoder(8 if big else 6),
        PretrainedWeightsError,
        "round 1's export",
    ),
}


def _trained(model):
    """``model`` with weights unlike a fresh one's (and BatchNorm stats)."""
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    if any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
        model.train()
        model(torch.randn(5, 4))
    return model


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("site", sorted(CALL_SITES))
def test_one_strict_loader(site, tmp_path):
    load, make, error, named = CALL_SITES[site]
    src = _trained(make(False))
    state = {k: v.clone() for k, v in src.state_dict().items()}

    # A good file, also with DDP's prefix (and, for the CLUB front-end, the
    # wrapper's "frontend." prefix next to the decoupling block's keys).
    good = tmp_path / "good.ckpt"
    torch.save(state, good)
    dst = make(False)
    load(dst, str(good))
    assert _same(dst, src)
    ddp = tmp_path / "ddp.ckpt"
    torch.save({f"module.{k}": v for k, v in state.items()}, ddp)
    dst = make(False)
    load(dst, str(ddp))
    assert _same(dst, src)
    if site == "club_frontend":
        wrapped = tmp_path / "wrapped.ckpt"
        torch.save(
            {f"module.frontend.{k}": v for k, v in state.items()}
            | {"module.decoupling.weight": torch.zeros(3)},
            wrapped,
        )
        dst = make(False)
        assert load(dst, str(wrapped)) == str(wrapped)
        assert _same(dst, src)

    # A mis-keyed file: one key renamed. Nothing is loaded.
    first = next(iter(state))
    mis_keyed = tmp_path / "mis_keyed.ckpt"
    renamed = dict(state)
    renamed[f"{first}_old"] = renamed.pop(first)
    torch.save(renamed, mis_keyed)
    dst = make(False)
    fresh = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(error, match=named) as err:
        load(dst, str(mis_keyed))
    msg = str(err.value)
    assert str(mis_keyed) in msg
    assert f"missing keys (1): [{first}]" in msg
    assert f"unexpected keys (1): [{first}_old]" in msg
    assert all(torch.equal(v, fresh[k]) for k, v in dst.state_dict().items())

    # A mis-shaped file: another width of the same model.
    mis_shaped = tmp_path / "mis_shaped.ckpt"
    torch.save(make(True).state_dict(), mis_shaped)
    with pytest.raises(error, match=named) as err:
        load(make(False), str(mis_shaped))
    assert str(mis_shaped) in str(err.value)
    assert "shape mismatches (" in str(err.value)
    assert "in the file" in str(err.value)


def test_bad_files_are_named(tmp_path):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        load_strict(model, tmp_path / "absent.ckpt")
    with pytest.raises(HparamsError, match="pretrained_frontend: .*absent"):
        load_pretrained_frontend(model, str(tmp_path / "absent.ckpt"))

    listed = tmp_path / "list.ckpt"
    torch.save([torch.zeros(2)], listed)
    for load in (load_strict, load_exported_vae, load_pretrained_frontend):
        with pytest.raises(ValueError, match="list.ckpt.*not a state_dict"):
            load(model, listed if load is load_strict else str(listed))

    # weights_only=True: a pickle of arbitrary objects is refused.
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"weight": argparse.Namespace(a=1)}, pickled)
    with pytest.raises(
        PretrainedWeightsError, match="weights_only=True"
    ) as err:
        read_state_dict(pickled)
    assert "\n" not in str(err.value) and "argparse.Namespace" in str(err.value)

    damaged = tmp_path / "damaged.ckpt"
    torch.save(model.state_dict(), damaged)
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(PretrainedWeightsError, match="damaged.ckpt: cannot"):
        read_state_dict(damaged)


def test_integer_buffers_only_when_asked(tmp_path):
    # The VAE's time strides must agree; BatchNorm's counter need not.
    strides = [3, 3, 1, 1, 1]
    path = export_vae(ConvVAE(time_stride=strides), tmp_path / "v.ckpt")
    with pytest.raises(
        ValueError, match=r"integer buffers differing \(1\): \[time_strides "
    ):
        load_exported_vae(ConvVAE(), path)
    src = _trained(_encoder())
    assert int(src[1].num_batches_tracked) == 1
    torch.save(src.state_dict(), tmp_path / "bn.ckpt")
    dst = _encoder()
    load_strict(dst, tmp_path / "bn.ckpt")
    assert _same(dst, src)


def test_pretrainer_from_yaml_is_strict(tmp_path, caplog):
    """SpeechBrain's default transfer leaves a mis-keyed model untouched
    with only warnings; the StrictTransfer hook, named in a yaml, refuses
    the file."""
    src = _trained(_encoder())
    renamed = {
        k.replace("0.", "first."): v for k, v in src.state_dict().items()
    }
    path = tmp_path / "renamed.ckpt"
    torch.save(renamed, path)

    model = _encoder()
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    default = Pretrainer(loadables={"m": model}, paths={"m": str(path)})
    default.collect_files()
    with caplog.at_level(logging.WARNING):
        default.load_collected()
    assert torch.equal(model[0].weight, fresh["0.weight"])  # still random
    assert "did not have parameters for the key" in caplog.text

    yaml = f"""
model: !new:torch.nn.Linear
    in_features: 4
    out_features: 6
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <model>
    paths:
        model: {path}
    custom_hooks:
        model: !new:speechbrain_ssv.utils.pretrained.StrictTransfer
            hint: use the pretraining yaml's model
"""
    hp = load_hyperpyyaml(yaml)
    hp["pretrainer"].collect_files()
    with pytest.raises(PretrainedWeightsError, match="renamed.ckpt: does not"):
        hp["pretrainer"].load_collected()


def test_strict_pretrainer_never_looks_up_the_hub(tmp_path):
    # SpeechBrain takes a path whose folder does not exist for a
    # HuggingFace repository; local files are named as missing instead.
    missing = tmp_path / "no_such_folder" / "model.ckpt"
    pretrainer = strict_pretrainer({"m": torch.nn.Linear(2, 2)}, {"m": missing})
    pretrainer.collect_files()
    with pytest.raises(PretrainedWeightsError, match="no_such_folder"):
        pretrainer.load_collected()
