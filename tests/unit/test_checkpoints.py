"""AtomicCheckpointer: a save interrupted part-way never becomes the checkpoint a run resumes from."""

import pathlib

import pytest
import torch
import yaml

from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer

REPO = pathlib.Path(__file__).resolve().parents[2]


class _Dies:
    """A recoverable whose save 'kills the process' (raises) after the earlier files were written."""

    def __init__(self):
        self.armed = False

    def save(self, path):
        if self.armed:
            raise KeyboardInterrupt("simulated kill during checkpoint save")
        pathlib.Path(path).write_text("ok")

    def load(self, path, end_of_epoch=False):
        assert pathlib.Path(path).read_text() == "ok"


def _checkpointer(folder, model, dies):
    ck = AtomicCheckpointer(folder, recoverables={"model": model})
    ck.add_recoverable(
        "zz_last",
        dies,
        custom_save_hook=_Dies.save,
        custom_load_hook=_Dies.load,
    )
    return ck


def test_interrupted_save_is_invisible_and_cleaned(tmp_path):
    model = torch.nn.Linear(3, 3)
    dies = _Dies()
    ck = _checkpointer(tmp_path, model, dies)
    good = ck.save_checkpoint(meta={"step": 1})
    saved_weight = model.weight.detach().clone()

    with torch.no_grad():
        model.weight.add_(1.0)
    dies.armed = True
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(meta={"step": 2})
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(folders) == 2, (
        "the interrupted save left its folder (as a real kill would)"
    )

    # A fresh process (new objects) resumes from the last complete checkpoint.
    model2 = torch.nn.Linear(3, 3)
    ck2 = _checkpointer(tmp_path, model2, _Dies())
    recovered = ck2.recover_if_possible()
    assert recovered.path == good.path and recovered.meta["step"] == 1
    assert torch.equal(model2.weight, saved_weight)

    # The next save removes the leftover folder.
    ck2.save_checkpoint(meta={"step": 3})
    metas = sorted(
        yaml.safe_load((p / "CKPT.yaml").read_text())["step"]
        for p in tmp_path.iterdir()
    )
    assert metas == [1, 3]


def test_no_partial_files_left(tmp_path):
    ck = AtomicCheckpointer(
        tmp_path, recoverables={"model": torch.nn.Linear(2, 2)}
    )
    ckpt = ck.save_checkpoint()
    assert sorted(p.name for p in ckpt.path.iterdir()) == [
        "CKPT.yaml",
        "model.ckpt",
    ]


def test_recipes_use_atomic_checkpointer():
    yamls = sorted(REPO.glob("recipes/**/hparams/*.yaml"))
    assert yamls
    for path in yamls:
        text = path.read_text()
        if "checkpointer:" in text:
            assert (
                "speechbrain_ssv.utils.checkpoints.AtomicCheckpointer" in text
            ), path
