"""FFSVC preparation end to end on a generated tiny FFSVC-variant minivox
corpus (the same code path as the real FFSVC layout with a metadata CSV),
then the pair sampler and the MFA-Conformer on the prepared manifests."""

import csv
import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.lobes.features import Fbank

from speechbrain_ssv.data.ffsvc import prepare_ffsvc
from speechbrain_ssv.data.samplers import SpeakerPairSampler
from speechbrain_ssv.eval.trials import read_trials
from speechbrain_ssv.lobes.mfa_conformer import MFAConformer
from speechbrain_ssv.minivox import generate_minivox

pytestmark = pytest.mark.slow

DEVICES = {"CLS", "IPH", "AND", "IPD", "MIC"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("minivox_ffsvc") / "tiny"
    # 6 speakers (2 held out) x 6 utterances x 7 device renders: ~8 s.
    generate_minivox(
        root,
        size="tiny",
        variant="ffsvc",
        workers=1,
        progress=False,
        n_speakers=6,
        n_test_speakers=2,
        n_utts=6,
    )
    return str(root)


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_prepare_minivox_ffsvc(corpus, tmp_path, caplog):
    save = str(tmp_path / "save")
    out = prepare_ffsvc(corpus, save)
    train, dev, test = (_rows(out[k]) for k in ("train", "dev", "test"))
    with open(os.path.join(corpus, "meta", "ffsvc_meta.csv")) as f:
        meta = list(csv.DictReader(f))
    held_out = {r["spk"] for r in meta if r["split"] == "test"}
    assert len(held_out) == 2

    # Device labels on every row; all five devices in training.
    assert {r["device"] for r in train} == DEVICES
    assert {r["device"] for r in dev} == DEVICES
    assert all(r["distance"] != "" for r in train + dev + test)
    # Trial speakers are excluded from train/dev and are all of test.
    assert not {r["spk_id"] for r in train + dev} & held_out
    assert {r["spk_id"] for r in test} == held_out
    assert {r["spk_id"] for r in train} == {r["spk"] for r in meta} - held_out

    # The normalised trial list reads with the evaluation code and names
    # only test.csv ids; cross-device trials (CLS enrolment) are kept.
    trials = read_trials(out["trials"][0])
    ids = {r["ID"]: r for r in test}
    assert all(t.enrol in ids and t.test in ids for t in trials)
    assert all(ids[t.enrol]["device"] == "CLS" for t in trials)
    assert all(ids[t.test]["device"] != "CLS" for t in trials)
    for r in test[:5]:
        assert os.path.isfile(r["wav"])

    # Rerun with the same options is skipped.
    stamp = os.path.getmtime(out["train"])
    with caplog.at_level(logging.INFO, logger="speechbrain_ssv.data.ffsvc"):
        prepare_ffsvc(corpus, save)
    assert "skipped" in caplog.text
    assert os.path.getmtime(out["train"]) == stamp

    # Changing an option rewrites the manifests.
    prepare_ffsvc(corpus, save, device_with_distance=True)
    assert {r["device"] for r in _rows(out["train"])} >= {"MIC_150", "MIC_500"}


def test_sampler_and_encoder_on_prepared_manifest(corpus, tmp_path):
    out = prepare_ffsvc(corpus, str(tmp_path / "save"))
    ds = DynamicItemDataset.from_csv(out["train"])
    sampler = SpeakerPairSampler.from_dataset(ds, batch_speakers=3, seed=0)
    labels = [ds.data[i]["spk_id"] for i in ds.data_ids]
    batches = list(sampler)
    assert batches
    for batch in batches:
        spk = [labels[i] for i in batch]
        assert len(set(spk)) == 3 and all(spk.count(s) == 2 for s in spk)

    # Two utterances of one batch through Fbank + a small MFA-Conformer.
    wavs = [sf.read(ds.data[ds.data_ids[i]]["wav"])[0] for i in batches[0][:2]]
    n = min(len(w) for w in wavs)
    sig = torch.tensor(np.stack([w[:n] for w in wavs]), dtype=torch.float32)
    feats = Fbank(n_mels=40)(sig)
    enc = MFAConformer(
        input_size=40, d_model=32, num_blocks=2, nhead=2, d_ffn=64
    ).eval()
    with torch.no_grad():
        emb = enc(feats, torch.tensor([1.0, 0.5]))
    assert emb.shape == (2, 1, 192)
    assert torch.isfinite(emb).all()
    # Atomic writes leave no temporary file behind.
    assert not [f for f in os.listdir(tmp_path / "save") if ".tmp" in f]
