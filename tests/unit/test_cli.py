"""The package's command lines: help for every option, one ``error: ...``
line and exit status 2 on bad input (the traceback only with SSV_DEBUG=1),
and the minivox generator's missing-extra message."""

import argparse
import importlib
import re
import runpy
import subprocess
import sys

import pytest

from speechbrain_ssv.utils.errors import (
    USER_ERROR_STATUS,
    MissingExtraError,
    report_user_error,
)

# Every argparse command line of the package (export and eval have their
# own tests).
CLI_MODULES = [
    "speechbrain_ssv.minivox.__main__",
    "speechbrain_ssv.data.voxceleb",
    "speechbrain_ssv.data.ffsvc",
    "speechbrain_ssv.inside.synthesize",
    "speechbrain_ssv.inside.tiny",
]

# What Sphinx would render but a terminal shows raw.
RST_MARKUP = re.compile(r"``|:[a-z]+:`|\.\. ")


class _Parser(Exception):
    """Carries the parser out of ``main`` before it parses anything."""


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SSV_DEBUG", raising=False)
    monkeypatch.delenv("SSV_TRACEBACK", raising=False)


def _parser_of(module, monkeypatch):
    def capture(self, args=None, namespace=None):
        raise _Parser(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parser) as exc:
        importlib.import_module(module).main([])
    return exc.value.args[0]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_option_has_plain_help(module, monkeypatch):
    parser = _parser_of(module, monkeypatch)
    for action in parser._actions:
        assert action.help, f"{module}: {action.option_strings} has no help"
    text = parser.format_help()
    assert not RST_MARKUP.search(text), text
    assert "SSV_DEBUG=1" in text


def test_minivox_bad_value_is_one_error_line(tmp_path, capsys):
    from speechbrain_ssv.minivox.__main__ import main

    status = main(["--out", str(tmp_path), "--size", "tiny", "--n_utts", "1"])
    assert status == USER_ERROR_STATUS
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: n_utts/n_noise/n_rir/trials_per_utt: "
        "expected n_utts >= 2 and the others >= 1"
    ]


def test_ssv_debug_adds_the_traceback(tmp_path, capsys, monkeypatch):
    from speechbrain_ssv.minivox.__main__ import main

    monkeypatch.setenv("SSV_DEBUG", "1")
    status = main(["--out", str(tmp_path), "--size", "tiny", "--n_utts", "1"])
    assert status == USER_ERROR_STATUS
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any("resolve_options" in line for line in lines)
    assert lines[-1].startswith("error: n_utts/")


def test_ssv_traceback_is_still_accepted(capsys, monkeypatch):
    monkeypatch.setenv("SSV_TRACEBACK", "1")
    try:
        raise MissingExtraError("minivox", ["pyroomacoustics"], "x")
    except MissingExtraError as err:
        assert report_user_error(err) == USER_ERROR_STATUS
    assert "Traceback" in capsys.readouterr().err


# runpy warns that the module was already imported (by the package's
# __init__ chain); harmless here, the __main__ block is what is run.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ["voxceleb", "ffsvc"])
def test_preparation_cli_exits_2_on_bad_input(
    module, tmp_path, capsys, monkeypatch
):
    # The real ``python -m`` entry (its __main__ block), in-process.
    missing = tmp_path / "no_such_corpus"
    argv = ["--data_folder", str(missing), "--save_folder", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module(f"speechbrain_ssv.data.{module}", run_name="__main__")
    assert exc.value.code == USER_ERROR_STATUS
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {missing}: ")


def test_minivox_without_its_extra_says_what_to_install(
    tmp_path, capsys, monkeypatch
):
    # None in sys.modules makes ``import`` raise ImportError, as when the
    # distributions are not installed.
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    for name in [
        m for m in sys.modules if m.startswith("speechbrain_ssv.minivox")
    ]:
        monkeypatch.delitem(sys.modules, name)
    minivox = importlib.import_module("speechbrain_ssv.minivox")
    cli = importlib.import_module("speechbrain_ssv.minivox.__main__")

    with pytest.raises(MissingExtraError) as exc:
        minivox.generate_minivox(tmp_path / "c", size="tiny", workers=1)
    assert exc.value.missing == ["pyroomacoustics", "espeakng-loader"]
    assert not (tmp_path / "c").exists()

    status = cli.main(["--out", str(tmp_path / "c"), "--size", "tiny"])
    assert status == USER_ERROR_STATUS
    assert capsys.readouterr().err.splitlines() == [
        "error: pyroomacoustics, espeakng-loader: not installed; the minivox "
        "corpus generator needs them: pip install 'speechbrain-ssv[minivox]'"
    ]


def test_no_module_imports_the_minivox_extra_at_import_time():
    # A fresh interpreter, so that modules already imported by other tests
    # do not hide a top-level import.
    code = (
        "import sys, importlib, pkgutil, speechbrain_ssv\n"
        "sys.modules['pyroomacoustics'] = None\n"
        "sys.modules['espeakng_loader'] = None\n"
        "for m in pkgutil.walk_packages(speechbrain_ssv.__path__, "
        "'speechbrain_ssv.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
