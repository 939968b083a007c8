"""Shared fixtures: one tiny generated minivox corpus per test session."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AN4 = os.path.join(os.path.dirname(REPO), "shared", "data", "an4-dev")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tiny VoxCeleb-shaped corpus (generated once per session)."""
    from speechbrain_ssv.minivox import generate_minivox

    root = tmp_path_factory.mktemp("minivox_tiny")
    generate_minivox(str(root), size="tiny", workers=1)
    return str(root)


@pytest.fixture(scope="session")
def tiny_ffsvc_corpus(tmp_path_factory):
    """A tiny FFSVC-shaped corpus: 6 speakers (2 held out) x 4 utterances
    x 7 device renders (~15 s to generate, once per session)."""
    from speechbrain_ssv.minivox import generate_minivox

    root = tmp_path_factory.mktemp("ffsvc_tiny") / "corpus"
    generate_minivox(
        str(root),
        size="tiny",
        variant="ffsvc",
        workers=1,
        progress=False,
        n_speakers=6,
        n_test_speakers=2,
        n_utts=4,
    )
    return str(root)


@pytest.fixture(scope="session")
def an4_dev():
    """Real read speech (CMU AN4 subset) with a trial list, when present."""
    if not os.path.isdir(AN4):
        pytest.skip("shared/data/an4-dev is not present")
    return AN4
