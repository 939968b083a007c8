"""VerificationBrain: the evaluation cache tag follows the weights."""

import torch

from speechbrain_ssv.brains import base


class _Enc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x, lens=None):
        return self.lin(x)


def test_verify_tag_changes_with_weights(monkeypatch, tmp_path):
    tags = []

    def fake_eval(encoder_fn, utts, trials, out_dir, model_tag, **kw):
        tags.append(model_tag)
        return {"eer": 0.0, "min_dcf@0.01": 0.0}

    monkeypatch.setattr(base, "evaluate_verification", fake_eval)
    mods = {
        "compute_features": torch.nn.Identity(),
        "mean_var_norm": torch.nn.Identity(),
        "embedding_model": _Enc(),
    }
    brain = base.VerificationBrain(
        modules=mods,
        hparams={"verification_file": "t.txt", "verify_batch_size": 8},
        run_opts={"device": "cpu"},
    )
    brain._test_utts = {}
    brain.verify(str(tmp_path), "final-step10")
    brain.verify(str(tmp_path), "final-step10")
    with torch.no_grad():
        brain.modules.embedding_model.lin.weight.add_(1.0)
    brain.verify(str(tmp_path), "final-step10")
    assert tags[0] == tags[1] and tags[0].startswith("final-step10-w")
    # Same name, other weights (e.g. a re-run in the same output folder):
    # the cached embeddings must not be reused.
    assert tags[2] != tags[0]


def test_yaml_loader_options_adapt_to_workers_and_device():
    # The minivox yamls ask for persistent workers, prefetching and pinned
    # memory; --num_workers 0 and a CPU run must still build a loader.
    brain = base.VerificationBrain(
        modules={"lin": torch.nn.Linear(2, 2)}, run_opts={"device": "cpu"}
    )
    data = [torch.zeros(2) for _ in range(4)]
    opts = {
        "batch_size": 2,
        "persistent_workers": True,
        "prefetch_factor": 4,
        "pin_memory": True,
    }
    loader = brain.make_dataloader(
        data, stage=None, ckpt_prefix=None, num_workers=0, **opts
    )
    assert not loader.persistent_workers and not loader.pin_memory
    assert len(list(loader)) == 2
    loader = brain.make_dataloader(
        data, stage=None, ckpt_prefix=None, num_workers=1, **opts
    )
    assert loader.persistent_workers and loader.prefetch_factor == 4


def test_diverged_model_is_reported_as_divergence(monkeypatch, tmp_path):
    # A NaN weight (e.g. --lr 100) used to surface as a NaN embedding "for"
    # an audio file, blaming the data.
    calls = []
    monkeypatch.setattr(
        base, "evaluate_verification", lambda *a, **k: calls.append(1)
    )
    mods = {
        "compute_features": torch.nn.Identity(),
        "mean_var_norm": torch.nn.Identity(),
        "embedding_model": _Enc(),
    }
    brain = base.VerificationBrain(
        modules=mods,
        hparams={"verification_file": "t.txt", "verify_batch_size": 8},
        run_opts={"device": "cpu"},
    )
    with torch.no_grad():
        brain.modules.embedding_model.lin.weight[0, 0] = float("nan")
    try:
        brain.verify(str(tmp_path), "final")
    except base.TrainingDivergedError as err:
        assert "embedding_model.lin.weight" in str(err)
        assert "training diverged" in str(err)
    else:
        raise AssertionError("a NaN weight was not reported")
    assert calls == []
