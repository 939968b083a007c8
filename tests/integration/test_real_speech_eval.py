"""Evaluation on real read speech (CMU AN4 subset in shared/data): the
MFCC-mean baseline separates speakers of real recordings, and the scoring
output is complete. Skipped when the data folder is absent."""

import json
import os

from speechbrain_ssv.eval.baselines import MFCCMeanEncoder
from speechbrain_ssv.eval.trials import read_trials, utt_id_from_path
from speechbrain_ssv.eval.verification import evaluate_verification


def test_mfcc_mean_on_an4(an4_dev, tmp_path):
    trial_path = os.path.join(an4_dev, "trials.txt")
    trials = read_trials(trial_path)
    utts = {
        utt_id_from_path(item): os.path.join(an4_dev, "wav", item)
        for t in trials
        for item in (t.enrol, t.test)
    }
    enc = MFCCMeanEncoder().eval()
    metrics = evaluate_verification(
        lambda w, lens: enc(w, lens),
        utts,
        trial_path,
        str(tmp_path / "out"),
        model_tag="mfcc-mean",
        progress=False,
    )
    assert metrics["n_trials"] == len(trials)
    # Chance is 50 %; clean read speech is easy for channel-free MFCC stats.
    assert metrics["eer"] < 0.35
    saved = json.load(open(tmp_path / "out" / "metrics.json"))
    assert saved["eer"] == metrics["eer"]
    lines = open(tmp_path / "out" / "scores.txt").read().splitlines()
    assert len(lines) == len(trials) and len(lines[0].split()) == 4
