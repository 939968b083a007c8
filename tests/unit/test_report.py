"""Readable reports: minDCF logged in one unit (0-1), plot titles that name
the method, epoch and EER instead of cache tags."""

import os
from types import SimpleNamespace

import torch

from speechbrain_ssv.brains import base
from speechbrain_ssv.eval import verification
from speechbrain_ssv.utils.io import write_wav


class SDPNBrain(base.VerificationBrain):
    teacher_keys = ("teacher_embedding_model",)


def test_verification_stats_unit_and_title(monkeypatch, tmp_path):
    seen = {}

    def fake_eval(encoder_fn, utts, trials, out_dir, model_tag, **kw):
        seen["title"] = kw.get("title")
        return {"eer": 0.0953, "min_dcf@0.01": 0.3744}

    monkeypatch.setattr(base, "evaluate_verification", fake_eval)
    mods = {
        "compute_features": torch.nn.Identity(),
        "mean_var_norm": torch.nn.Identity(),
        "embedding_model": torch.nn.Linear(4, 2),
    }
    brain = SDPNBrain(
        modules=mods,
        hparams={
            "verification_file": "t.txt",
            "verify_every": 1,
            "method": "sdpn",
            "verify_batch_size": 8,
            "output_folder": str(tmp_path),
            "epoch_counter": SimpleNamespace(limit=10),
        },
        run_opts={"device": "cpu"},
    )
    brain._test_utts = {}
    stats = brain.verification_stats(8)
    # EER in %, minDCF normalised (0-1) as in results.json and summaries.
    assert stats["EER"] == 9.53
    assert stats["minDCF"] == 0.3744
    assert seen["title"] == "SDPN (teacher), epoch 8"


def test_plot_titles_name_model_and_eer(monkeypatch, tmp_path):
    titles = []

    def fake_plot(*args, title=None, **kw):
        titles.append(title)

    monkeypatch.setattr(verification, "plot_det", fake_plot)
    monkeypatch.setattr(verification, "plot_score_histogram", fake_plot)
    utt_to_wav = {}
    t = torch.arange(8000) / 16000
    for spk, f0 in (("s1", 200.0), ("s2", 500.0)):
        for u in range(2):
            p = os.path.join(tmp_path, f"{spk}_{u}.wav")
            wav = 0.3 * torch.sin(2 * torch.pi * (f0 + 10 * u) * t)
            write_wav(p, wav, 16000)
            utt_to_wav[f"{spk}/{u}"] = p
    trials = tmp_path / "trials.txt"
    trials.write_text(
        "1 s1/0.wav s1/1.wav\n0 s1/0.wav s2/1.wav\n"
        "1 s2/0.wav s2/1.wav\n0 s2/0.wav s1/1.wav\n"
    )

    def enc(wavs, lens):
        return torch.fft.rfft(wavs[:, :4000]).abs()[:, ::25]

    verification.evaluate_verification(
        enc,
        utt_to_wav,
        str(trials),
        str(tmp_path / "out"),
        "final-step360-w61c7b",
        title="SDPN (teacher), epoch 8",
        progress=False,
    )
    assert titles == ["SDPN (teacher), epoch 8: EER 0.00%"] * 2
