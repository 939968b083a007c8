"""run_recipe: how a recipe process ends (single process here; the
torchrun cases are in tests/integration/test_ddp.py)."""

import pytest

from speechbrain_ssv.utils.distributed import USER_ERROR_STATUS, run_recipe
from speechbrain_ssv.utils.errors import HparamsError


def test_bad_input_is_one_line_not_a_traceback(capsys, monkeypatch):
    monkeypatch.delenv("SSV_DEBUG", raising=False)
    monkeypatch.delenv("SSV_TRACEBACK", raising=False)

    def main(argv):
        raise HparamsError("ecapa.yaml: --lr abc", "expected a float")

    with pytest.raises(SystemExit) as exc:
        run_recipe(main, ["ecapa.yaml"])
    assert exc.value.code == USER_ERROR_STATUS
    err = capsys.readouterr().err
    assert err == "error: ecapa.yaml: --lr abc: expected a float\n"


def test_ssv_debug_prints_the_traceback_before_the_error_line(
    capsys, monkeypatch
):
    monkeypatch.setenv("SSV_DEBUG", "1")

    def main(argv):
        raise HparamsError("ecapa.yaml: --lr abc", "expected a float")

    with pytest.raises(SystemExit) as exc:
        run_recipe(main, ["ecapa.yaml"])
    assert exc.value.code == USER_ERROR_STATUS
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "error: ecapa.yaml: --lr abc: expected a float"


def test_other_errors_keep_their_traceback():
    def main(argv):
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        run_recipe(main, [])


def test_result_is_returned_without_a_process_group():
    assert run_recipe(lambda argv: argv[::-1], ["a", "b"]) == ["b", "a"]
