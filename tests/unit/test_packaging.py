"""Packaging: ranges in setup.cfg (installing the plugin keeps a user's
torch), the exact tested set in constraints.txt, and the Makefile using it."""

import configparser
import os

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _lines(text):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            yield line


@pytest.fixture(scope="module")
def setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    base = [Requirement(r) for r in _lines(cfg["options"]["install_requires"])]
    extras = {
        name: [Requirement(r) for r in _lines(value)]
        for name, value in cfg["options.extras_require"].items()
    }
    return base, extras


@pytest.fixture(scope="module")
def constraints():
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        pins = [Requirement(line) for line in _lines(f.read())]
    return {canonicalize_name(r.name): r for r in pins}


def _by_name(reqs):
    return {canonicalize_name(r.name): r for r in reqs}


def test_core_requirements_are_ranges_that_keep_a_supported_torch(setup_cfg):
    base, _ = setup_cfg
    reqs = _by_name(base)
    assert not [str(r) for r in base if "==" in str(r.specifier)]
    # The oldest tested releases and the pinned ones are all admitted...
    for name, tested in {
        "torch": ("2.13.0", "2.14.1"),
        "torchaudio": ("2.11.0", "2.11.1"),
        "speechbrain": ("1.1.2",),
    }.items():
        for version in tested:
            assert reqs[name].specifier.contains(version), (name, version)
    # ... the next major release is not.
    assert not reqs["speechbrain"].specifier.contains("2.0.0")
    assert not reqs["torch"].specifier.contains("3.0.0")


def test_minivox_dependencies_are_an_extra(setup_cfg):
    base, extras = setup_cfg
    minivox = {"pyroomacoustics", "espeakng-loader"}
    assert not minivox & set(_by_name(base))
    assert set(_by_name(extras["minivox"])) == minivox
    assert "faiss-cpu" in _by_name(extras["faiss"])
    # The tests generate minivox corpora, so dev brings that extra along.
    dev = _by_name(extras["dev"])
    assert "minivox" in dev["speechbrain-ssv"].extras


def test_constraints_pin_every_direct_dependency_inside_its_range(
    setup_cfg, constraints
):
    base, extras = setup_cfg
    reqs = base + [r for group in extras.values() for r in group]
    for req in reqs:
        name = canonicalize_name(req.name)
        if name == "speechbrain-ssv":
            continue
        assert name in constraints, f"{name} is not pinned in constraints.txt"
        (pin,) = constraints[name].specifier
        assert pin.operator == "==", constraints[name]
        assert req.specifier.contains(Version(pin.version)), (req, pin)
    known_good = {
        "torch": "2.14.1",
        "torchaudio": "2.11.0",
        "speechbrain": "1.1.2",
    }
    for name, version in known_good.items():
        assert str(constraints[name].specifier) == f"=={version}"


def test_make_venv_installs_with_the_constraints():
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    stamp = next(
        line for line in makefile.splitlines() if line.startswith("$(STAMP):")
    )
    assert "constraints.txt" in stamp.split(":", 1)[1]
    assert (
        "pip install --quiet -c constraints.txt -e '.[dev,tts,minivox,faiss]'"
        in makefile
    )
