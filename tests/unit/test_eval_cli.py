"""``python -m speechbrain_ssv.eval score``: any export scored with stock
SpeechBrain, thresholds calibrated, clean errors on bad input."""

import json
import os

import numpy as np
import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ssv.eval.__main__ import main
from speechbrain_ssv.eval.metrics import eer_mindcf
from speechbrain_ssv.export import export_checkpoint
from speechbrain_ssv.utils.io import write_wav

TRAIN_YAML = """
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 24
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: 24
    channels: [16, 16, 16, 16, 48]
    attention_channels: 8
    lin_neurons: 16
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny export, a corpus of tone "speakers" and a trial list."""
    root = tmp_path_factory.mktemp("evalcli")
    out = root / "results"
    (out / "save").mkdir(parents=True)
    (out / "hyperparams.yaml").write_text(TRAIN_YAML)
    torch.manual_seed(0)
    enc = ECAPA_TDNN(
        24, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=16
    )
    Checkpointer(str(out / "save"), {"embedding_model": enc}).save_checkpoint()
    model = export_checkpoint(out / "save", root / "model", verify=False)
    data = root / "data"
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    utts = []
    for s in range(4):
        for u in range(3):
            f = (120.0 + 60.0 * s) * (1 + 0.03 * torch.randn(1, generator=g))
            wav = sum(
                torch.sin(2 * torch.pi * k * f * t) / k for k in (1, 2, 3)
            )
            wav = 0.1 * (wav + 0.3 * torch.randn(t.shape, generator=g))
            rel = f"spk{s}/u{u}.wav"
            (data / f"spk{s}").mkdir(parents=True, exist_ok=True)
            write_wav(str(data / rel), wav, 16000)
            utts.append(rel)
    lines = [
        f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}"
        for i, a in enumerate(utts)
        for b in utts[i + 1 :]
    ]
    trials = root / "trials.txt"
    trials.write_text("\n".join(lines) + "\n")
    # The cohort: other recordings, listed one path a line.
    cohort = root / "cohort.txt"
    cohort.write_text("\n".join(utts[::2]) + "\n")
    return {
        "model": model,
        "data": str(data),
        "trials": str(trials),
        "cohort": str(cohort),
        "root": root,
    }


def test_score_cli_end_to_end(corpus, capsys):
    out = corpus["root"] / "scored"
    argv = ["score", corpus["model"], corpus["trials"]]
    argv += ["--data_folder", corpus["data"], "--out", str(out)]
    assert main(argv + ["--noprogressbar"]) == 0
    printed = capsys.readouterr().out
    assert "EER" in printed and "threshold" in printed
    assert {"scores.txt", "metrics.json", "det.png"} <= set(os.listdir(out))
    m = json.load(open(out / "metrics.json"))
    # The thresholds and metrics are those of the written scores.
    rows = [line.split() for line in open(out / "scores.txt")]
    scores = np.array([float(r[3]) for r in rows])
    labels = np.array([int(r[2]) for r in rows])
    ref = eer_mindcf(scores, labels)
    assert m["n_trials"] == len(rows) == 66
    for key in ("eer", "eer_threshold", "min_dcf@0.01_threshold"):
        assert m[key] == pytest.approx(ref[key], abs=1e-6), key
    assert m["model"] == os.path.abspath(corpus["model"])
    # The metrics give a calibrated model card.
    from speechbrain_ssv.export import main as export_main

    save = os.path.join(corpus["root"], "results", "save")
    card_dir = corpus["root"] / "carded"
    status = export_main(
        [save, "--out", str(card_dir), "--no-verify", "--metrics"]
        + [str(out / "metrics.json")]
    )
    assert status == 0
    card = open(card_dir / "README.md").read()
    assert f"threshold={m['eer_threshold']:.4f}" in card
    assert "trials.txt" in card

    # s-norm against the cohort scores other (normalised) values.
    out_norm = corpus["root"] / "scored_snorm"
    argv_norm = argv[:-1] + [str(out_norm), "--noprogressbar"]
    argv_norm += ["--norm", "s-norm", "--cohort", corpus["cohort"]]
    assert main(argv_norm) == 0
    m_norm = json.load(open(out_norm / "metrics.json"))
    assert m_norm["norm"] == "s-norm"
    assert m_norm["eer_threshold"] != pytest.approx(m["eer_threshold"])


def _error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_score_cli_bad_input(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SSV_DEBUG", raising=False)
    base = ["--data_folder", corpus["data"], "--out", str(tmp_path / "o")]
    missing = str(tmp_path / "nope")
    assert main(["score", missing, corpus["trials"], *base]) == 2
    assert "nope: model folder does not exist" in _error(capsys)

    bad = tmp_path / "bad.txt"
    bad.write_text("1 spk0/u0.wav spk0/u1.wav\n1 spk0/u0.wav spk0/u1.wav x\n")
    assert main(["score", corpus["model"], str(bad), *base]) == 2
    assert "bad.txt: line 2: expected '<label> <enrol> <test>'" in _error(
        capsys
    )

    absent = tmp_path / "absent.txt"
    absent.write_text("1 spk0/u0.wav spk9/u1.wav\n0 spk0/u0.wav spk1/u1.wav\n")
    assert main(["score", corpus["model"], str(absent), *base]) == 2
    err = _error(capsys)
    assert "absent.txt: line 1: test utterance 'spk9/u1'" in err
    assert "spk9/u1.wav does not exist" in err

    assert main(["score", corpus["model"], corpus["trials"], *base]) == 0
    capsys.readouterr()
    assert main(["score", corpus["model"], corpus["trials"], *base,
                 "--norm", "as-norm"]) == 2  # fmt: skip
    assert "--norm: as-norm needs a --cohort list" in _error(capsys)

    # SSV_DEBUG=1 shows the traceback too.
    monkeypatch.setenv("SSV_DEBUG", "1")
    assert main(["score", missing, corpus["trials"], *base]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_score_cli_help_is_plain(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text
    for option in ("--data_folder", "--cohort", "--norm", "--out", "--device"):
        assert option in text
    assert "accept when score > threshold" in " ".join(text.split())
