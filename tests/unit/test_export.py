"""Export: a checkpoint becomes a folder that EncoderClassifier loads
offline, with bit-identical weights."""

import os
import shutil

import pytest
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ssv.export import export_checkpoint, verify_export
from speechbrain_ssv.utils.checkpoints import find_checkpoint
from speechbrain_ssv.utils.errors import SSVInputError

TRAIN_YAML = """
n_mels: 24
emb: 16
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    attention_channels: 8
    lin_neurons: !ref <emb>
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: !ref <emb>
    out_neurons: 10
"""


@pytest.fixture
def recipe_output(tmp_path):
    """A recipe output folder as the Supervised recipe leaves it."""
    out = tmp_path / "results"
    save = out / "save"
    save.mkdir(parents=True)
    (out / "hyperparams.yaml").write_text(TRAIN_YAML)
    torch.manual_seed(0)
    enc = ECAPA_TDNN(
        24, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=16
    )
    # out_neurons in the yaml is larger than the label count on purpose
    cls = Classifier(16, out_neurons=3)
    for p in cls.parameters():
        torch.nn.init.normal_(p)
    ckpter = Checkpointer(
        str(save), {"embedding_model": enc, "classifier": cls}
    )
    ckpter.save_checkpoint(meta={"ErrorRate": 0.5})
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01)
    ckpter.save_checkpoint(meta={"ErrorRate": 0.1})
    lab = CategoricalEncoder()
    lab.update_from_iterable(["id00001", "id00002", "id00003"])
    lab.save(str(save / "label_encoder.txt"))
    return out, enc, cls


def test_export_loads_bit_identical(recipe_output, tmp_path):
    from speechbrain.inference.speaker import (
        EncoderClassifier,
        SpeakerRecognition,
    )

    out, enc, cls = recipe_output
    folder = export_checkpoint(
        out / "save", tmp_path / "pretrained", min_key="ErrorRate"
    )
    assert sorted(os.listdir(folder)) == sorted(
        [
            "hyperparams.yaml",
            "embedding_model.ckpt",
            "classifier.ckpt",
            "label_encoder.ckpt",
            "export_info.json",
            "README.md",
        ]
    )
    text = open(os.path.join(folder, "hyperparams.yaml")).read()
    assert "!new:speechbrain_ssv" not in text and "paths:" not in text
    # Relocate the folder: the export must not depend on where it was made.
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    model = EncoderClassifier.from_hparams(
        source=str(moved), savedir=str(tmp_path / "sd")
    )
    for k, v in enc.state_dict().items():
        assert torch.equal(model.mods.embedding_model.state_dict()[k], v), k
    assert model.mods.classifier.weight.shape == (3, 16)
    wav = torch.randn(1, 16000)
    feats = model.mods.mean_var_norm(
        model.mods.compute_features(wav), torch.ones(1)
    )
    ref = enc.eval()(feats).squeeze()
    emb = model.encode_batch(wav).squeeze()
    assert torch.isfinite(emb).all()
    assert torch.allclose(emb, ref, atol=1e-5)
    assert model.classify_batch(wav)[3][0] in {"id00001", "id00002", "id00003"}
    verifier = SpeakerRecognition.from_hparams(
        source=str(moved), savedir=str(tmp_path / "sd2")
    )
    score, _ = verifier.verify_batch(wav, wav)
    assert score.item() == pytest.approx(1.0, abs=1e-5)


def test_export_picks_checkpoint_by_key(recipe_output, tmp_path):
    out, enc, _ = recipe_output
    folder = export_checkpoint(
        out / "save", tmp_path / "p", max_key="ErrorRate"
    )
    saved = torch.load(os.path.join(folder, "embedding_model.ckpt"))
    # max ErrorRate is the first checkpoint, saved before the +0.01 shift
    k = next(iter(saved))
    assert torch.equal(saved[k] + 0.01, enc.state_dict()[k])


def test_export_refuses_foreign_folder(recipe_output, tmp_path):
    out, _, _ = recipe_output
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "notes.txt").write_text("user data")
    with pytest.raises(SSVInputError, match="not an earlier export"):
        export_checkpoint(out / "save", victim)
    assert (victim / "notes.txt").read_text() == "user data"


def test_verify_export_detects_mis_keyed_weights(recipe_output, tmp_path):
    out, _, _ = recipe_output
    folder = export_checkpoint(out / "save", tmp_path / "p")
    path = os.path.join(folder, "embedding_model.ckpt")
    state = torch.load(path)
    torch.save({"student." + k: v for k, v in state.items()}, path)
    with pytest.raises(RuntimeError, match="keys differ"):
        verify_export(folder)


def test_export_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(SSVInputError, match="does not exist"):
        export_checkpoint(tmp_path / "nope", tmp_path / "p")


def test_find_checkpoint_key_missing_everywhere_is_clear(
    recipe_output, tmp_path
):
    out, _, _ = recipe_output
    with pytest.raises(
        SSVInputError, match="no checkpoint has the meta key 'EER'"
    ):
        export_checkpoint(out / "save", tmp_path / "p", min_key="EER")


def test_find_checkpoint_refuses_both_keys(recipe_output, tmp_path):
    out, _, _ = recipe_output
    with pytest.raises(SSVInputError, match="at most one"):
        export_checkpoint(
            out / "save",
            tmp_path / "p",
            min_key="ErrorRate",
            max_key="ErrorRate",
        )


def test_export_strips_ddp_prefix_before_state_prefix(recipe_output, tmp_path):
    out, enc, _ = recipe_output
    ckpt = find_checkpoint(out / "save")
    path = os.path.join(ckpt, "embedding_model.ckpt")
    state = torch.load(path)
    # A DDP-wrapped teacher-style wrapper: module.backbone.<param>
    torch.save({"module.backbone." + k: v for k, v in state.items()}, path)
    folder = export_checkpoint(
        out / "save",
        tmp_path / "p",
        state_prefix="backbone.",
        classifier_key=None,
    )
    saved = torch.load(os.path.join(folder, "embedding_model.ckpt"))
    assert sorted(saved) == sorted(state)


def test_export_classifier_without_weight_is_clear(recipe_output, tmp_path):
    out, _, _ = recipe_output
    ckpt = find_checkpoint(out / "save")
    torch.save({"bias": torch.zeros(3)}, os.path.join(ckpt, "classifier.ckpt"))
    with pytest.raises(SSVInputError, match="classifier.ckpt.*'weight'"):
        export_checkpoint(out / "save", tmp_path / "p")


def test_verify_export_checks_normaliser_statistics(recipe_output, tmp_path):
    out, _, _ = recipe_output
    hp = out / "hyperparams.yaml"
    hp.write_text(
        hp.read_text().replace("norm_type: sentence", "norm_type: global")
    )
    stats = {
        "count": 3,
        "glob_mean": torch.randn(24),
        "glob_std": torch.rand(24) + 0.5,
    }
    torch.save(
        stats, os.path.join(find_checkpoint(out / "save"), "normalizer.ckpt")
    )
    folder = export_checkpoint(out / "save", tmp_path / "p")
    assert "mean_var_norm.ckpt" in os.listdir(folder)
    # A yaml whose Pretrainer does not load the normaliser leaves its
    # statistics at init, with no error from SpeechBrain.
    text = open(os.path.join(folder, "hyperparams.yaml")).read()
    assert "loadables: {mean_var_norm: !ref <mean_var_norm>, " in text
    text = text.replace(
        "loadables: {mean_var_norm: !ref <mean_var_norm>, ", "loadables: {"
    )
    open(os.path.join(folder, "hyperparams.yaml"), "w").write(text)
    with pytest.raises(RuntimeError, match="glob_mean"):
        verify_export(folder)


def test_written_files_honour_umask(recipe_output, tmp_path):
    # A shared cluster: with umask 022 others must be able to read corpora,
    # manifests, results and exported models (mkstemp/mkdtemp alone give
    # 0600 files and 0700 folders, whatever the umask).
    from speechbrain_ssv.utils.io import write_json

    out, _, _ = recipe_output
    old = os.umask(0o022)
    try:
        write_json(str(tmp_path / "r" / "results.json"), {"eer": 0.1})
        folder = export_checkpoint(
            str(out / "save"),
            str(tmp_path / "pretrained"),
            hparams_file=str(out / "hyperparams.yaml"),
        )
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "r" / "results.json").st_mode & 0o777 == 0o644
    assert os.stat(folder).st_mode & 0o777 == 0o755
    for name in os.listdir(folder):
        mode = os.stat(os.path.join(folder, name)).st_mode & 0o777
        assert mode & 0o044 == 0o044, f"{name}: mode {oct(mode)}"
    old = os.umask(0o077)
    try:
        write_json(str(tmp_path / "private.json"), {})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600


def test_export_verify_detects_bit_flip(recipe_output, tmp_path):
    import json
    import subprocess
    import sys

    from speechbrain_ssv.export import check_export

    out, _, _ = recipe_output
    folder = export_checkpoint(out / "save", tmp_path / "pretrained")
    info = json.load(open(os.path.join(folder, "export_info.json")))
    assert sorted(info["files"]) == sorted(
        [
            "hyperparams.yaml",
            "embedding_model.ckpt",
            "classifier.ckpt",
            "label_encoder.ckpt",
            "README.md",
        ]
    )
    for name, rec in info["files"].items():
        assert rec["bytes"] == os.path.getsize(os.path.join(folder, name))
        assert len(rec["sha256"]) == 64
    # An untouched export passes.
    check_export(folder)
    path = os.path.join(folder, "embedding_model.ckpt")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(
        SSVInputError,
        match=r"embedding_model\.ckpt: sha256 [0-9a-f]{64} does not match "
        r"export_info\.json \("
        + info["files"]["embedding_model.ckpt"]["sha256"],
    ):
        check_export(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_ssv.export", "verify", folder],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "embedding_model.ckpt" in proc.stderr
    assert "bit flip" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_refuses_diverged_checkpoint(recipe_output, tmp_path):
    out, _, _ = recipe_output
    ckpt = find_checkpoint(out / "save")
    path = os.path.join(ckpt, "embedding_model.ckpt")
    state = torch.load(path)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    torch.save(state, path)
    with pytest.raises(SSVInputError, match="diverged") as err:
        export_checkpoint(out / "save", tmp_path / "p")
    assert "embedding_model.ckpt" in str(err.value)
    assert os.path.basename(ckpt) in str(err.value)
    assert repr(key) in str(err.value)
    assert not (tmp_path / "p").exists()
    # Nothing half-written is left next to the destination either.
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".export")]


def test_export_removes_orphan_temp_folders(recipe_output, tmp_path):
    import socket
    import subprocess
    import sys

    out, _, _ = recipe_output
    dest = tmp_path / "models" / "pretrained"
    dest.parent.mkdir()
    # The pid of a process that has exited: what a killed export leaves.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphans = [
        dest.parent / f".export.pretrained.{dead.pid}@{host}.abc123_x",
        dest.parent / f".export-old.pretrained.{dead.pid}@{host}.q9w8e7r6",
    ]
    for orphan in orphans:
        (orphan / "x").mkdir(parents=True)
        (orphan / "x" / "embedding_model.ckpt").write_bytes(b"partial")
    # Kept: another destination's, a live export's, and a user's folder.
    kept = [
        dest.parent / f".export.other.{dead.pid}@{host}.abc123_x",
        dest.parent / f".export.pretrained.{os.getppid()}@{host}.abc123_x",
        dest.parent / ".export.notes",
    ]
    for folder in kept:
        folder.mkdir()
    export_checkpoint(out / "save", dest, verify=False)
    for orphan in orphans:
        assert not orphan.exists(), orphan
    for folder in kept:
        assert folder.exists(), folder
    assert sorted(os.listdir(dest.parent)) == sorted(
        ["pretrained"] + [f.name for f in kept]
    )


def _speaker_audio(n_speakers=6, n_utts=4, seconds=1.0, seed=0):
    """Held-out "speakers": harmonic tones at a speaker-specific f0 with
    per-utterance jitter and noise, all of one length (no padding)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16000 * seconds)) / 16000
    audio = {}
    for s in range(n_speakers):
        f0 = 110.0 + 45.0 * s
        for u in range(n_utts):
            f = f0 * (1 + 0.04 * torch.randn(1, generator=g).item())
            wav = sum(
                torch.sin(2 * torch.pi * k * f * t) / k for k in range(1, 6)
            )
            wav = wav + 0.3 * torch.randn(t.shape, generator=g)
            audio[f"spk{s}/utt{u}"] = 0.1 * wav
    return audio


def test_model_card_threshold_reproduces_eer(recipe_output, tmp_path):
    """The card's EER threshold, applied by stock SpeechBrain to the
    exported model, makes the errors the card reports."""
    import itertools
    import json

    from speechbrain.inference.speaker import SpeakerRecognition
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    from speechbrain_ssv.eval.verification import evaluate_verification
    from speechbrain_ssv.utils.io import write_wav

    out, enc, _ = recipe_output
    audio = _speaker_audio()
    utt_to_wav = {}
    for utt, wav in audio.items():
        path = tmp_path / "heldout" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(str(path), wav, 16000)
        utt_to_wav[utt] = str(path)
    pairs = list(itertools.combinations(sorted(audio), 2))
    labels = [int(a.split("/")[0] == b.split("/")[0]) for a, b in pairs]
    trial_list = tmp_path / "heldout_trials.txt"
    trial_list.write_text(
        "".join(f"{y} {a}.wav {b}.wav\n" for (a, b), y in zip(pairs, labels))
    )
    # The card's metrics come from the training-side modules, as the
    # recipes' final verification computes them (the last checkpoint's
    # encoder, which is the one exported below).
    fbank = Fbank(n_mels=24)
    cmn = InputNormalization(norm_type="sentence", std_norm=False)
    enc.eval()

    def encode(wavs, lens):
        with torch.no_grad():
            return enc(cmn(fbank(wavs), lens), lens)

    metrics = evaluate_verification(
        encode,
        utt_to_wav,
        str(trial_list),
        str(tmp_path / "eval"),
        "tiny",
        progress=False,
    )
    assert 0.02 < metrics["eer"] < 0.45, metrics["eer"]
    folder = export_checkpoint(
        out / "save",
        tmp_path / "pretrained",
        min_key="ErrorRate",
        metrics=metrics,
        method="Tiny",
    )
    info = json.load(open(os.path.join(folder, "export_info.json")))
    threshold = info["thresholds"]["eer"]
    card = open(os.path.join(folder, "README.md")).read()
    assert f"threshold={threshold:.4f}" in card
    assert "heldout_trials.txt" in card and "recalibrate" in card
    assert f"| {100 * metrics['eer']:.2f} |" in card

    verifier = SpeakerRecognition.from_hparams(
        source=folder, savedir=str(tmp_path / "sd")
    )
    # Read back from the files, as verify_files would (16-bit PCM).
    wav = {u: verifier.load_audio(p) for u, p in utt_to_wav.items()}
    wavs1 = torch.stack([wav[a] for a, _ in pairs])
    wavs2 = torch.stack([wav[b] for _, b in pairs])
    _, decision = verifier.verify_batch(wavs1, wavs2, threshold=threshold)
    accept = decision.reshape(-1).bool()
    target = torch.tensor(labels, dtype=torch.bool)
    far = (accept & ~target).sum().item() / (~target).sum().item()
    frr = (~accept & target).sum().item() / target.sum().item()
    assert abs((far + frr) / 2 - metrics["eer"]) <= 0.005, (far, frr)


def test_model_card_without_metrics_says_uncalibrated(recipe_output, tmp_path):
    import json

    from speechbrain_ssv.export import main

    out, _, _ = recipe_output
    assert main([str(out / "save"), "--out", str(tmp_path / "p")]) == 0
    card = open(tmp_path / "p" / "README.md").read()
    assert "**not calibrated**" in card
    assert "threshold=THRESHOLD" in card
    info = json.load(open(tmp_path / "p" / "export_info.json"))
    assert info["thresholds"] is None and not info["thresholds_calibrated"]
    assert info["recipe"].endswith("/results/hyperparams.yaml")


def test_export_cli_metrics_errors_and_help(recipe_output, tmp_path, capsys):
    from speechbrain_ssv.export import main

    out, _, _ = recipe_output
    bad = tmp_path / "metrics.json"
    bad.write_text('{"eer": 0.1}')
    status = main(
        [str(out / "save"), "--out", str(tmp_path / "p"), "--metrics", str(bad)]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "metrics.json: has no 'eer_threshold'" in err
    assert not os.path.exists(tmp_path / "p")
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text
    # Every option says what it does.
    assert "--no-verify" in text and "bit-identical" in text
    assert "--min-key MIN_KEY\n" not in text
