"""minivox generation: the whole corpus (speakers in worker processes,
then the noise and RIR sets and the metadata), resumable and byte-identical
for the same seed and options.

Authors
 * speechbrain-ssv developers 2026
"""

import multiprocessing as mp
import os
import time

from tqdm import tqdm

from speechbrain_ssv.minivox.options import check_minivox_extra, resolve_options
from speechbrain_ssv.minivox.plan import (
    make_trials,
    plan_corpus,
    utterance_files,
)
from speechbrain_ssv.minivox.render import (
    remove_stray_temps,
    render_speaker,
    write_noise_set,
    write_rir_set,
)
from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import write_text
from speechbrain_ssv.utils.stages import check_recorded_options


def write_meta(root, plan, opts):
    """Write the VoxCeleb1 meta CSV, the trial list and the FFSVC meta CSV.

    Arguments
    ---------
    root : str
        Corpus root.
    plan : list of dict
        From :func:`~speechbrain_ssv.minivox.plan.plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    int
        Number of trials.
    """
    meta = os.path.join(root, "meta")
    remove_stray_temps(meta, recursive=False)
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for spk in plan:
        v = spk["voice"]
        lines.append(
            f"{spk['id']}\tMinivox_Speaker_{spk['index'] + 1:05d}\t{v['gender']}\t{v['nationality']}\t{spk['split']}"
        )
    write_text(os.path.join(meta, "vox1_meta.csv"), "\n".join(lines) + "\n")
    trials = make_trials(plan, opts)
    write_text(
        os.path.join(meta, "veri_test2.txt"),
        "".join(f"{lab} {e} {t}\n" for lab, e, t in trials),
    )
    if opts["variant"] == "ffsvc":
        rows = ["utt,spk,session,device,distance,gender,split"]
        for spk in plan:
            for rel, sid, dev, dist in utterance_files(spk, opts):
                rows.append(
                    f"wav/{rel},{spk['id']},{sid},{dev},{dist},{spk['voice']['gender']},{spk['split']}"
                )
        write_text(os.path.join(meta, "ffsvc_meta.csv"), "\n".join(rows) + "\n")
    return len(trials)


def generate_minivox(
    root,
    size="default",
    variant="voxceleb",
    channel="strong",
    seed=1234,
    workers=2,
    progress=True,
    **overrides,
):
    """Generate (or finish generating) a minivox corpus.

    Arguments
    ---------
    root : str
        Output folder (created).
    size : str
        ``tiny`` (tests: 16 speakers, 6 held out, 6 utterances) or
        ``default`` (200 speakers, 40 held out, 20 utterances).
    variant : str
        ``voxceleb`` or ``ffsvc`` (every utterance rendered per device).
    channel : str
        Per-session channel strength: ``none``, ``mild`` or ``strong``.
    seed : int
        Corpus seed; same seed and options give byte-identical files.
    workers : int
        Worker processes (speakers are spread over them); 1 runs in-process.
        Does not change the output.
    progress : bool
        Show a tqdm bar.
    **overrides
        ``n_speakers``, ``n_test_speakers``, ``n_utts``, ``sessions``,
        ``n_noise``, ``n_rir``, ``trials_per_utt``.

    Returns
    -------
    dict
        ``root``, ``options``, ``n_speakers``, ``n_test_speakers``,
        ``n_files``, ``written``, ``skipped``, ``n_trials``, ``seconds``.

    Raises
    ------
    SSVInputError
        On a bad option, or a folder holding a corpus made with other
        options.
    MissingExtraError
        When the ``minivox`` extra (pyroomacoustics, espeakng-loader) is not
        installed.
    """
    opts = resolve_options(size, variant, channel, seed, **overrides)
    if not isinstance(workers, int) or workers < 1:
        raise SSVInputError(
            "workers", f"got {workers!r}; expected an integer >= 1"
        )
    check_minivox_extra()
    start = time.time()
    root = os.path.abspath(os.fspath(root))
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    check_recorded_options(
        os.path.join(root, "meta", "minivox.json"), opts, "a minivox corpus"
    )
    plan = plan_corpus(opts)
    jobs = [(opts, spk, root) for spk in plan]
    counts = {"written": 0, "skipped": 0}
    bar = tqdm(total=len(jobs), desc="minivox speakers", disable=not progress)
    if workers == 1:
        results = map(render_speaker, jobs)
        pool = None
    else:
        # Spawned (not forked) workers: a forked child inherits the parent's
        # espeak-ng state, and re-initialising over it made renders depend on
        # what the parent had synthesised before.
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(render_speaker, jobs)
    try:
        for res in results:
            counts["written"] += res["written"]
            counts["skipped"] += res["skipped"]
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    counts["written"] += write_noise_set(root, opts)
    counts["written"] += write_rir_set(root, opts)
    n_trials = write_meta(root, plan, opts)
    n_files = sum(len(utterance_files(s, opts)) for s in plan)
    return {
        "root": root,
        "options": opts,
        "n_speakers": len(plan),
        "n_test_speakers": opts["n_test_speakers"],
        "n_files": n_files,
        "written": counts["written"],
        "skipped": counts["skipped"],
        "n_trials": n_trials,
        "seconds": round(time.time() - start, 2),
    }
