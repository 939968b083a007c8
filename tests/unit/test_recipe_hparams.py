"""Every recipe yaml loads (paper-scale ones included) and wires what its Brain needs."""

import pathlib

import pytest

from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.hparams import load_hparams
from speechbrain_ssv.utils.schedulers import StepSchedule

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
    # Every recipe Brain applies a required lr_annealing (the clustering
    # model its own, in clustering_hparams); a stateful SpeechBrain
    # scheduler must be checkpointed to resume its counter.
    schedules = {"lr_annealing": hp["lr_annealing"]}
    if "clustering_hparams" in hp:
        schedules["clustering_hparams"] = hp["clustering_hparams"][
            "lr_annealing"
        ]
    for key, sched in schedules.items():
        if not isinstance(sched, StepSchedule):
            assert hasattr(sched, "on_batch_end"), f"{path.name}: {key}"
            assert sched in hp["checkpointer"].recoverables.values(), (
                f"{path.name}: {key} is not checkpointed"
            )
