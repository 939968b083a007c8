"""Tests of the one resumable-stage / skip-if-unchanged mechanism."""

import json
import os

import pytest

from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.stages import (
    begin_stage,
    check_recorded_options,
    finish_stage,
    read_stage,
    stage_is_done,
)


def test_stage_skip_resume_and_invalidation(tmp_path):
    folder = tmp_path / "stage"
    assert begin_stage(folder, {"a": 1}) is False
    (folder / "partial.bin").write_bytes(b"x")
    # Killed before finishing: same options keep the partial work.
    assert begin_stage(folder, {"a": 1}) is False
    assert (folder / "partial.bin").exists()
    (folder / "out.txt").write_text("result")
    rec = finish_stage(folder, {"a": 1}, ["out.txt"], info={"n": 3})
    assert rec["status"] == "done" and rec["info"] == {"n": 3}
    assert stage_is_done(folder, {"a": 1})
    assert begin_stage(folder, {"a": 1}) is True
    # A missing output makes the stage run again (with its partial files).
    os.remove(folder / "out.txt")
    assert not stage_is_done(folder, {"a": 1})
    assert begin_stage(folder, {"a": 1}) is False
    assert (folder / "partial.bin").exists()
    # Changed options discard the earlier run.
    assert begin_stage(folder, {"a": 2}) is False
    assert not (folder / "partial.bin").exists()
    assert read_stage(folder)["opts"] == {"a": 2}
    # A foreign, non-empty folder is never deleted.
    other = tmp_path / "foreign"
    other.mkdir()
    (other / "data.txt").write_text("keep")
    with pytest.raises(SSVInputError, match="refusing to delete"):
        begin_stage(other, {"a": 1})
    assert (other / "data.txt").exists()


def test_recorded_options_refuse_a_second_configuration(tmp_path):
    path = tmp_path / "meta" / "corpus.json"
    check_recorded_options(path, {"seed": 1, "size": "tiny"}, "a corpus")
    assert json.loads(path.read_text())["options"] == {
        "seed": 1,
        "size": "tiny",
    }
    # Resuming with the same options is allowed and leaves the record.
    check_recorded_options(path, {"size": "tiny", "seed": 1}, "a corpus")
    with pytest.raises(SSVInputError) as err:
        check_recorded_options(path, {"seed": 2, "size": "tiny"}, "a corpus")
    message = str(err.value)
    assert str(path) in message and "differing: seed" in message
    assert "size" not in message.split("differing:")[1]
    # A record written before the shared mechanism (options at the top
    # level, as synthesis folders held them) is still understood.
    legacy = tmp_path / "synthesis.json"
    legacy.write_text(json.dumps({"seed": 3}))
    check_recorded_options(legacy, {"seed": 3}, "synthesis")
    with pytest.raises(SSVInputError, match="differing: seed"):
        check_recorded_options(legacy, {"seed": 4}, "synthesis")
    # An unreadable record is named, not overwritten.
    path.write_text("{not json")
    with pytest.raises(SSVInputError, match="unreadable"):
        check_recorded_options(path, {"seed": 1}, "a corpus")
    assert path.read_text() == "{not json"


def test_shared_folder_is_never_deleted(tmp_path):
    # A recipe's save folder: checkpoints live next to the stage's outputs.
    folder = tmp_path / "save"
    folder.mkdir()
    (folder / "CKPT.txt").write_text("checkpoint")
    assert begin_stage(folder, {"a": 1}, shared=True) is False
    (folder / "train.csv").write_text("x")
    finish_stage(folder, {"a": 1}, ["train.csv"])
    assert begin_stage(folder, {"a": 1}, shared=True) is True
    # Other options: redone in place, the other files kept, not done yet.
    assert begin_stage(folder, {"a": 2}, shared=True) is False
    assert (folder / "CKPT.txt").exists() and (folder / "train.csv").exists()
    assert read_stage(folder)["status"] == "running"
    assert not stage_is_done(folder, {"a": 1})
