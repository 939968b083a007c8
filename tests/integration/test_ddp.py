"""torchrun DDP (2 CPU processes, gloo) runs the recipes end to end: the
cross-rank statistics (SDPN's Sinkhorn sums, DINO centre, i-AP's gathered
negatives, CLUB's hand-reduced estimator gradients), main-process-only
verification and export must not deadlock or diverge between ranks."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# A loaded 2-core CI machine runs two ranks of a recipe in well under this.
TIMEOUT_S = 900


def torchrun(args, cwd=REPO):
    """Run ``torchrun --standalone --nproc_per_node=2 ARGS`` (``--standalone``
    rendezvouses on a free port of its own, so tests never collide on one)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", *args,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip


def output(proc):
    """Both streams' tails, for the assertion message."""
    return (
        f"exit status {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}"
        f"\n--- stderr ---\n{proc.stderr[-6000:]}"
    )


RECIPES = {
    "supervised": (
        "Supervised",
        "ecapa_minivox.yaml",
        ["--sentence_len", "1.5", "--warmup_epochs", "0"],
    ),
    "sdpn": ("SDPN", "sdpn_minivox.yaml", []),
    # i-AP gathers the anchors of both ranks as negatives (with gradient).
    "i_ap": ("MixAP", "i_ap_minivox.yaml", []),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_torchrun_two_cpu_ranks(name, tiny_corpus, tmp_path):
    folder, yaml_name, extra = RECIPES[name]
    recipe = os.path.join(REPO, "recipes", "VoxCeleb", folder)
    out = tmp_path / name
    args = [
        os.path.join(recipe, "train.py"),
        os.path.join(recipe, "hparams", yaml_name),
        "--data_folder",
        tiny_corpus,
        "--output_folder",
        str(out),
        "--distributed_backend",
        "gloo",
        "--number_of_epochs",
        "1",
        "--batch_size",
        "4",
        "--steps_per_epoch",
        "6",
        "--verify_every",
        "1",
        "--noprogressbar",
        "--num_workers",
        "0",
        *extra,
    ]
    proc = torchrun(args)
    assert proc.returncode == 0, output(proc)
    res = json.load(open(out / "results.json"))
    assert res["metrics"]["n_trials"] > 0
    assert os.path.isfile(
        os.path.join(res["export_folder"], "embedding_model.ckpt")
    )
    log = open(out / "train_log.txt").read()
    assert "epoch: 1" in log and "final verification" in log


@pytest.mark.parametrize("row", [6, 2])
def test_torchrun_club_two_cpu_ranks(row, tiny_ffsvc_corpus, tmp_path):
    # Row 6: the vCLUB estimators live outside DDP and their gradients are
    # all-reduced by hand; row 2 has no device branch (unused parameters).
    recipe = os.path.join(REPO, "recipes", "FFSVC", "CLUB")
    out = tmp_path / f"row{row}"
    args = [
        os.path.join(recipe, "train.py"),
        os.path.join(recipe, "hparams", "club_minivox.yaml"),
        "--data_folder", tiny_ffsvc_corpus, "--output_folder", str(out),
        "--distributed_backend", "gloo", "--table1_row", str(row),
        "--split_ratio", "[75, 25]", "--batch_speakers", "2",
        "--max_pairs_per_speaker", "2", "--steps_per_epoch", "4",
        "--number_of_epochs", "1", "--sentence_len", "1.0",
        "--probe_max_seconds", "2.0", "--tsne_speakers", "3", "--noprogressbar", "--num_workers", "0",
    ]  # fmt: skip
    proc = torchrun(args)
    assert proc.returncode == 0, output(proc)
    res = json.load(open(out / "results.json"))
    assert res["table1_row"] == row and res["metrics"]["n_trials"] > 0
    # The epoch's 4 steps are shared by the 2 ranks.
    assert res["optimizer_steps"] == 2
    assert os.path.isfile(
        os.path.join(res["export_folder"], "embedding_model.ckpt")
    )
    log = open(out / "train_log.txt").read()
    assert log.count("epoch: 1") == 1 and "final verification" in log


# Rank 1 leaves right after collectives whose tensors came from Python (the
# autograd all-gather of i-AP, an object broadcast as in final_verification)
# while rank 0 still works: before run_recipe this aborted rank 1 with
# "terminate called without an active exception" in about a third to a half
# of the launches (gloo frees those tensors on its worker threads during
# interpreter finalization), and the launcher then killed rank 0.
EXIT_RACE = textwrap.dedent(
    """
    import sys, time
    import torch, torch.distributed as dist
    from speechbrain_ssv.losses.common import gather_with_grad
    from speechbrain_ssv.utils.distributed import run_recipe

    def main(argv):
        dist.init_process_group("gloo")
        x = torch.randn(64, 8, requires_grad=True)
        gathered, _ = gather_with_grad(x)
        (gathered ** 2).sum().backward()
        box = [{"eer": 0.1}] if dist.get_rank() == 0 else [None]
        dist.broadcast_object_list(box, src=0)
        for _ in range(5):
            dist.all_reduce(torch.ones(16))  # the temporary dies first here
        if argv and argv[0] == "fail" and dist.get_rank() == 1:
            raise ValueError("rank 1 failed on purpose")
        if dist.get_rank() == 0:
            time.sleep(0.5)  # main-process-only work (scoring, export)
            open(argv[-1], "w").write("done")

    run_recipe(main)
    """
)


def test_ranks_exit_cleanly_after_gloo_collectives(tmp_path):
    script = tmp_path / "exit_race.py"
    script.write_text(EXIT_RACE)
    for attempt in range(6):
        done = tmp_path / f"done{attempt}"
        proc = torchrun([str(script), str(done)])
        assert proc.returncode == 0, f"launch {attempt}: " + output(proc)
        assert "terminate called" not in proc.stderr
        assert done.read_text() == "done"


def test_failing_rank_reports_its_error_not_an_abort(tmp_path):
    script = tmp_path / "exit_race.py"
    script.write_text(EXIT_RACE)
    proc = torchrun([str(script), "fail", str(tmp_path / "done")])
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stderr, output(proc)
    assert "exitcode  : 1 " in proc.stderr, output(proc)
    assert "SIGABRT" not in proc.stderr, output(proc)
