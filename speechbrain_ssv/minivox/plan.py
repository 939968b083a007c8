"""minivox plan: speakers, their voices, sessions, file names and the
trial list, all drawn before (and without) any audio.

Authors
 * speechbrain-ssv developers 2026
"""

import string

import numpy as np

from speechbrain_ssv.minivox.channels import DEVICES
from speechbrain_ssv.minivox.options import seeded_rng
from speechbrain_ssv.minivox.voices import draw_voice

_SESSION_CHARS = string.ascii_letters + string.digits + "-_"


def session_id(rng):
    """An 11-character YouTube-like id.

    Arguments
    ---------
    rng : numpy.random.Generator
        Randomness.

    Returns
    -------
    str
        The id.

    Example
    -------
    >>> len(session_id(np.random.default_rng(0)))
    11
    """
    return "".join(
        _SESSION_CHARS[i] for i in rng.integers(len(_SESSION_CHARS), size=11)
    )


def device_suffix(device, distance):
    """File-name suffix of an FFSVC-variant render.

    Arguments
    ---------
    device : str
        Device id.
    distance : float
        Distance in metres.

    Returns
    -------
    str
        ``<DEV>_<cm>``.

    Example
    -------
    >>> device_suffix("MIC", 1.5)
    'MIC_150'
    """
    return f"{device}_{int(round(distance * 100)):03d}"


def plan_corpus(opts):
    """Speakers, their voices, sessions and file names (no audio).

    Arguments
    ---------
    opts : dict
        From :func:`~speechbrain_ssv.minivox.options.resolve_options`.

    Returns
    -------
    list of dict
        Per speaker: ``id``, ``index``, ``split`` (dev/test), ``voice``,
        ``sessions`` (list of ``(session_id, [utt stems])``).

    Example
    -------
    >>> from speechbrain_ssv.minivox.options import resolve_options
    >>> plan = plan_corpus(resolve_options("tiny"))
    >>> len(plan), sum(s["split"] == "test" for s in plan)
    (16, 6)
    """
    seed = opts["seed"]
    n_test = opts["n_test_speakers"]
    lo, hi = opts["sessions"]
    plan = []
    for index in range(opts["n_speakers"]):
        voice = draw_voice(seeded_rng(seed, "voice", index))
        rng = seeded_rng(seed, "sessions", index)
        n_sess = int(rng.integers(lo, hi + 1))
        n_sess = min(n_sess, opts["n_utts"])
        # Every session gets at least one utterance, the rest spread at random.
        counts = np.ones(n_sess, dtype=int)
        extra = rng.integers(n_sess, size=opts["n_utts"] - n_sess)
        counts += np.bincount(extra, minlength=n_sess)
        sessions = []
        used = set()
        for count in counts:
            sid = session_id(rng)
            while sid in used:
                sid = session_id(rng)
            used.add(sid)
            sessions.append((sid, [f"{k + 1:05d}" for k in range(int(count))]))
        plan.append(
            {
                "id": f"id{index + 1:05d}",
                "index": index,
                "split": "test"
                if index >= opts["n_speakers"] - n_test
                else "dev",
                "voice": voice,
                "sessions": sessions,
            }
        )
    return plan


def utterance_files(spk, opts):
    """Relative wav paths (under ``wav/``) of one speaker, grouped per session.

    Arguments
    ---------
    spk : dict
        One entry of :func:`plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    list of (str, str, str, float)
        ``(relative path, session, device, distance)``; device is ``""`` in
        the voxceleb variant.

    Example
    -------
    >>> from speechbrain_ssv.minivox.options import resolve_options
    >>> opts = resolve_options("tiny")
    >>> utterance_files(plan_corpus(opts)[0], opts)[0][0]
    'id00001/.../00001.wav'
    """
    out = []
    for sid, utts in spk["sessions"]:
        for utt in utts:
            if opts["variant"] == "ffsvc":
                for dev, dist, _ in DEVICES:
                    name = f"{utt}_{device_suffix(dev, dist)}.wav"
                    out.append((f"{spk['id']}/{sid}/{name}", sid, dev, dist))
            else:
                out.append((f"{spk['id']}/{sid}/{utt}.wav", sid, "", 0.0))
    return out


def _pick_trials(rng, enrol_items, test_pool, n_per):
    """Balanced target / non-target trials.

    ``enrol_items`` and ``test_pool`` are lists of (spk, session, path).
    Targets prefer test files from another session of the same speaker.
    """
    by_spk = {}
    for item in test_pool:
        by_spk.setdefault(item[0], []).append(item)
    trials = []
    for spk, sess, path in enrol_items:
        own = [t for t in by_spk[spk] if t[2] != path]
        other_sess = [t for t in own if t[1] != sess]
        cands = other_sess if len(other_sess) >= n_per else own
        k = min(n_per, len(cands))
        if k == 0:
            continue
        for j in rng.choice(len(cands), size=k, replace=False):
            trials.append((1, path, cands[j][2]))
        others = [t for t in test_pool if t[0] != spk]
        for j in rng.choice(len(others), size=k, replace=False):
            trials.append((0, path, others[j][2]))
    return trials


def make_trials(plan, opts):
    """The ``veri_test2.txt`` trials over held-out speakers.

    Arguments
    ---------
    plan : list of dict
        From :func:`plan_corpus`.
    opts : dict
        Options.

    Returns
    -------
    list of (int, str, str)
        ``(label, enrol path, test path)``, paths relative to ``wav/``.

    Example
    -------
    >>> from speechbrain_ssv.minivox.options import resolve_options
    >>> opts = resolve_options("tiny")
    >>> trials = make_trials(plan_corpus(opts), opts)
    >>> sum(t[0] for t in trials) * 2 == len(trials)
    True
    """
    items = []
    for spk in plan:
        if spk["split"] != "test":
            continue
        for rel, sid, dev, _ in utterance_files(spk, opts):
            items.append((spk["id"], sid, rel, dev))
    rng = seeded_rng(opts["seed"], "trials")
    if opts["variant"] == "ffsvc":
        enrol = [i[:3] for i in items if i[3] == "CLS"]
        pool = [i[:3] for i in items if i[3] != "CLS"]
    else:
        enrol = pool = [i[:3] for i in items]
    return _pick_trials(rng, enrol, pool, opts["trials_per_utt"])
