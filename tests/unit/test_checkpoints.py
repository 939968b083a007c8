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


def test_enospc_message_names_path(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from speechbrain_ssv.utils.errors import OutputWriteError
    from speechbrain_ssv.utils.io import save_torch

    def full_disk(obj, path, *args, **kwargs):
        # Part of the file reaches the disk before the write fails.
        pathlib.Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    def torch_writer_fails(obj, path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 45"
        )

    usage = namedtuple("usage", "total used free")
    ck_dir = tmp_path / "ckpts"
    ck = AtomicCheckpointer(
        ck_dir, recoverables={"model": torch.nn.Linear(2, 2)}
    )
    good = ck.save_checkpoint(meta={"step": 1})

    for failing_save, reported_free in (
        (full_disk, None),
        (torch_writer_fails, 100),
    ):
        monkeypatch.setattr(torch, "save", failing_save)
        if reported_free is not None:
            monkeypatch.setattr(
                shutil,
                "disk_usage",
                lambda p, free=reported_free: usage(10**12, 10**12, free),
            )

        # The checkpointer: one error naming the final parameter file; the
        # unfinished folder is gone, the earlier checkpoint untouched.
        with pytest.raises(OutputWriteError) as info:
            ck.save_checkpoint(meta={"step": 2})
        message = str(info.value)
        assert "no space left" in message
        assert "model.ckpt" in message and str(ck_dir / "CKPT+") in message
        assert [p.name for p in ck_dir.iterdir()] == [good.path.name]
        assert sorted(p.name for p in good.path.iterdir()) == [
            "CKPT.yaml",
            "model.ckpt",
        ]

        # save_torch (and atomic_path under it): the same, naming the target.
        out_dir = tmp_path / f"out_{failing_save.__name__}"
        target = out_dir / "model.pt"
        with pytest.raises(OutputWriteError) as info:
            save_torch(str(target), {"w": torch.ones(2)})
        message = str(info.value)
        assert "no space left" in message and str(target) in message
        assert list(out_dir.iterdir()) == []

        monkeypatch.undo()

    # The same torch error with plenty of space left is not called a full
    # disk: the original message and the path are given instead.
    monkeypatch.setattr(torch, "save", torch_writer_fails)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12)
    )
    target = tmp_path / "roomy" / "model.pt"
    with pytest.raises(OutputWriteError) as info:
        save_torch(str(target), {"w": torch.ones(2)})
    message = str(info.value)
    assert "no space left" not in message
    assert str(target) in message and "unexpected pos 123 vs 45" in message
    assert list(target.parent.iterdir()) == []


def test_resume_skips_corrupt_checkpoint(tmp_path, caplog):
    import logging

    from speechbrain_ssv.utils.errors import CheckpointError

    model = torch.nn.Linear(4, 4)
    ck = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    with torch.no_grad():
        model.weight.fill_(1.0)
    older = ck.save_checkpoint(meta={"loss": 0.5}, name="older")
    with torch.no_grad():
        model.weight.fill_(2.0)
    # The newest and the best (lowest loss): the one recovery picks first.
    newest = ck.save_checkpoint(meta={"loss": 0.1}, name="newest")
    damaged = newest.path / "model.ckpt"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])

    for kwargs in ({}, {"min_key": "loss"}):
        model2 = torch.nn.Linear(4, 4)
        ck2 = AtomicCheckpointer(tmp_path, recoverables={"model": model2})
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            recovered = ck2.recover_if_possible(**kwargs)
        assert recovered.path == older.path, kwargs
        assert torch.all(model2.weight == 1.0)
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert str(newest.path) in warned and "model.ckpt" in warned
        # Nothing the user made is deleted or renamed.
        assert damaged.exists() and (newest.path / "CKPT.yaml").exists()

    # With every checkpoint damaged: one clear error naming them.
    for ckpt in (older, newest):
        (ckpt.path / "model.ckpt").write_bytes(b"")
    ck3 = AtomicCheckpointer(
        tmp_path, recoverables={"model": torch.nn.Linear(4, 4)}
    )
    with pytest.raises(CheckpointError) as info:
        ck3.recover_if_possible(min_key="loss")
    message = str(info.value)
    assert "no intact checkpoint" in message
    assert str(older.path / "model.ckpt") in message
    assert str(newest.path / "model.ckpt") in message
