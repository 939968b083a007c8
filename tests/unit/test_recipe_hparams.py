"""Every recipe yaml loads (paper-scale ones included) and wires what its Brain needs."""

import pathlib

import pytest

from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.hparams import load_hparams

REPO = pathlib.Path(__file__).resolve().parents[2]
YAMLS = sorted(REPO.glob("recipes/**/hparams/*.yaml"))


@pytest.mark.parametrize(
    "path", YAMLS, ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_recipe_yaml_loads(path, tmp_path):
    hp = load_hparams(
        str(path),
        {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")},
    )
    assert isinstance(hp["checkpointer"], AtomicCheckpointer)
    # Whatever is trained is also checkpointed (a resume must restore it).
    recoverables = set(hp["checkpointer"].recoverables)
    for name, module in hp["modules"].items():
        if any(p.requires_grad for p in module.parameters()) and name not in (
            "compute_features",
            "mean_var_norm",
        ):
            assert name in recoverables, (
                f"{path.name}: module {name} is not checkpointed"
            )
