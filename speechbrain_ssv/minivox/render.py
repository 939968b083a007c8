"""minivox audio: every session of a speaker through its simulated
channel (voxceleb variant) or through every simulated device (ffsvc
variant), and the noise and room-impulse-response sets.

Every random draw comes from :func:`~speechbrain_ssv.minivox.options.seeded_rng`
keyed by (seed, purpose, speaker, session, utterance); files are written
atomically and existing ones are skipped.

Authors
 * speechbrain-ssv developers 2026
"""

import os

import numpy as np

from speechbrain_ssv.data.text import SentenceGenerator
from speechbrain_ssv.minivox.channels import (
    DEVICES,
    apply_codec,
    apply_response,
    coloured_noise,
    draw_session_channel,
    hum_noise,
    loop_segment,
    mix_at_snr,
    reverberate,
    room_rir,
    set_level,
)
from speechbrain_ssv.minivox.options import FS, MIN_SECONDS, seeded_rng
from speechbrain_ssv.minivox.plan import device_suffix
from speechbrain_ssv.minivox.voices import draw_voice, get_engine
from speechbrain_ssv.utils.io import write_text, write_wav


def remove_stray_temps(folder, recursive):
    """Delete temporary files an interrupted atomic write left behind."""
    if not os.path.isdir(folder):
        return
    walker = (
        os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    )
    for dirpath, _, files in walker:
        for name in files:
            if name.startswith(".") and ".tmp" in name:
                os.remove(os.path.join(dirpath, name))


def _speak(engine, voice, sgen, rng, rate_scale=1.0, pitch_scale=1.0):
    """Render sentences until the audio is at least MIN_SECONDS long."""
    text = sgen.sentence(rng)
    seed = int(rng.integers(2**31 - 1))
    for _ in range(4):
        wav = engine.synth(voice, text, rate_scale, pitch_scale, seed)
        if len(wav) >= MIN_SECONDS * FS:
            break
        text = text + " " + sgen.sentence(rng)
    return wav.astype(np.float64), text


_BABBLE_POOL = {}
_BABBLE_POOL_SIZE = 6


def _babble_pool_track(engine, seed, j):
    """Babble of 3-5 voices that are not corpus speakers (cached per process).

    Rendering babble per session would cost more than the speech itself, so
    sessions draw from a small pool that depends on the seed only; every
    process computes the same pool, so output does not depend on workers.
    """
    key = (os.getpid(), seed, j)
    if key not in _BABBLE_POOL:
        rng = seeded_rng(seed, "babble", j)
        sgen = SentenceGenerator(seed + 1)
        n = 8 * FS
        track = np.zeros(n)
        for _ in range(int(rng.integers(3, 6))):
            voice = draw_voice(rng)
            parts, total = [], 0
            while total < n:
                wav, _ = _speak(engine, voice, sgen, rng)
                parts.append(wav)
                total += len(wav)
            talker = np.concatenate(parts)[:n]
            track += talker / (np.sqrt(np.mean(talker**2)) + 1e-12)
        _BABBLE_POOL[key] = track / (np.sqrt(np.mean(track**2)) + 1e-12)
    return _BABBLE_POOL[key]


def _babble(engine, seed, rng, n):
    """Two pool tracks at random offsets and weights: varied, cheap babble."""
    out = np.zeros(n)
    for j in rng.choice(_BABBLE_POOL_SIZE, size=2, replace=False):
        track = _babble_pool_track(engine, seed, int(j))
        out += rng.uniform(0.5, 1.0) * loop_segment(rng, track, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _noise_track(engine, seed, keys, kind, alpha, seconds):
    rng = seeded_rng(seed, "noise", *keys)
    n = int(seconds * FS)
    if kind == "coloured":
        return coloured_noise(rng, n, alpha)
    if kind == "hum":
        return hum_noise(rng, n)
    return _babble(engine, seed, rng, n)


def _voxceleb_session(engine, opts, spk, sidx, sid, utts, root, counts):
    seed, index = opts["seed"], spk["index"]
    chan = draw_session_channel(
        seeded_rng(seed, "channel", index, sidx), opts["channel"]
    )
    sgen = SentenceGenerator(seed)
    rir = noise = None
    for uidx, utt in enumerate(utts):
        path = os.path.join(root, "wav", spk["id"], sid, f"{utt}.wav")
        if os.path.exists(path):
            counts["skipped"] += 1
            continue
        rng = seeded_rng(seed, "utt", index, sidx, uidx)
        if chan is None:
            wav, _ = _speak(engine, spk["voice"], sgen, rng)
            write_wav(path, set_level(wav, -23.0), FS)
            counts["written"] += 1
            continue
        if rir is None:
            crng = seeded_rng(seed, "room", index, sidx)
            rir = room_rir(
                crng, chan["absorption"], chan["distance"], chan["max_order"]
            )
            noise = _noise_track(
                engine, seed, (index, sidx), chan["noise"], chan["alpha"], 8.0
            )
        wav, _ = _speak(
            engine,
            spk["voice"],
            sgen,
            rng,
            chan["rate_scale"],
            chan["pitch_scale"],
        )
        y = reverberate(wav, rir)
        y = apply_response(y, chan["hp"], chan["lp"], chan["peaks"])
        y = mix_at_snr(y, loop_segment(rng, noise, len(y)), chan["snr"])
        write_wav(path, set_level(y, chan["level_db"]), FS)
        counts["written"] += 1


def _ffsvc_session(engine, opts, spk, sidx, sid, utts, root, counts):
    seed, index = opts["seed"], spk["index"]
    strength = opts["channel"]
    chan = draw_session_channel(
        seeded_rng(seed, "channel", index, sidx),
        "mild" if strength == "none" else strength,
    )
    sgen = SentenceGenerator(seed)
    rirs = noise = None
    for uidx, utt in enumerate(utts):
        paths = [
            os.path.join(
                root, "wav", spk["id"], sid, f"{utt}_{device_suffix(d, r)}.wav"
            )
            for d, r, _ in DEVICES
        ]
        missing = [not os.path.exists(p) for p in paths]
        counts["skipped"] += len(paths) - sum(missing)
        if not any(missing):
            continue
        if rirs is None:
            crng = seeded_rng(seed, "room", index, sidx)
            # One room per session shared by all devices (as in a recording
            # venue); each device sits at its own distance.
            dims = [
                crng.uniform(6.5, 11.0),
                crng.uniform(4.0, 8.0),
                crng.uniform(2.6, 4.0),
            ]
            rirs = [
                np.ones(1)
                if dist == 0.0
                else room_rir(
                    crng, chan["absorption"], dist, chan["max_order"], dims
                )
                for _, dist, _ in DEVICES
            ]
            if strength != "none":
                noise = _noise_track(
                    engine,
                    seed,
                    (index, sidx),
                    chan["noise"],
                    chan["alpha"],
                    8.0,
                )
        rng = seeded_rng(seed, "utt", index, sidx, uidx)
        dry, _ = _speak(
            engine,
            spk["voice"],
            sgen,
            rng,
            chan["rate_scale"],
            chan["pitch_scale"],
        )
        level = chan["level_db"]
        for k, (_, dist, resp) in enumerate(DEVICES):
            drng = seeded_rng(seed, "device", index, sidx, uidx, k)
            if not missing[k]:
                continue
            y = reverberate(dry, rirs[k])
            if noise is not None:
                # Ambient noise is the same in the room; farther devices
                # pick up relatively more of it.
                snr = chan["snr"] + 6.0 - 8.0 * np.log10(1 + 4 * dist)
                y = mix_at_snr(y, loop_segment(drng, noise, len(y)), snr)
            y = apply_response(y, resp["hp"], resp["lp"], resp["peaks"])
            y = mix_at_snr(y, drng.standard_normal(len(y)), 45.0 - 4.0 * dist)
            y = apply_codec(y, resp["rate"], resp["mulaw"])
            write_wav(paths[k], set_level(y, level - 2.0 * dist), FS)
            counts["written"] += 1


def render_speaker(args):
    """Render every missing file of one speaker (runs in a worker)."""
    opts, spk, root = args
    engine = get_engine()
    # Renders can depend on what the process synthesised before (espeak-ng
    # keeps hidden state). Build the babble pool first, always in the same
    # order, then give every speaker the same starting state, so that what a
    # speaker sounds like does not depend on which worker got it after whom.
    for j in range(_BABBLE_POOL_SIZE):
        _babble_pool_track(engine, opts["seed"], j)
    engine.reset()
    remove_stray_temps(os.path.join(root, "wav", spk["id"]), recursive=True)
    counts = {"written": 0, "skipped": 0}
    render = _ffsvc_session if opts["variant"] == "ffsvc" else _voxceleb_session
    for sidx, (sid, utts) in enumerate(spk["sessions"]):
        render(engine, opts, spk, sidx, sid, utts, root, counts)
    return counts


def _csv_rows(paths):
    """SpeechBrain's noise/RIR CSV (the format ``prepare_csv`` writes)."""
    lines = ["ID,duration,wav,wav_format,wav_opts"]
    for i, (path, n) in enumerate(paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        lines.append(f"{stem}_{i},{n / FS},{path},wav,")
    return "\n".join(lines) + "\n"


def write_noise_set(root, opts):
    """Write ``noise/*.wav`` and ``noise.csv`` (skipping existing files).

    Arguments
    ---------
    root : str
        Corpus root.
    opts : dict
        Options.

    Returns
    -------
    int
        Files written.
    """
    folder = os.path.join(root, "noise")
    remove_stray_temps(folder, recursive=False)
    rows, written = [], 0
    n = 6 * FS
    for i in range(opts["n_noise"]):
        kind = ("coloured", "hum", "babble")[i % 3]
        path = os.path.abspath(os.path.join(folder, f"{kind}_{i + 1:03d}.wav"))
        if not os.path.exists(path):
            rng = seeded_rng(opts["seed"], "noiseset", i)
            engine = get_engine()
            for j in range(_BABBLE_POOL_SIZE):
                _babble_pool_track(engine, opts["seed"], j)
            engine.reset()
            track = _noise_track(
                engine,
                opts["seed"],
                ("set", i),
                kind,
                float(rng.uniform(0, 2)),
                6.0,
            )
            write_wav(path, set_level(track, float(rng.uniform(-30, -18))), FS)
            written += 1
        rows.append((path, n))
    write_text(os.path.join(root, "noise.csv"), _csv_rows(rows))
    return written


def write_rir_set(root, opts):
    """Write ``rir/*.wav`` and ``rir.csv`` (skipping existing files).

    Arguments
    ---------
    root : str
        Corpus root.
    opts : dict
        Options.

    Returns
    -------
    int
        Files written.
    """
    folder = os.path.join(root, "rir")
    remove_stray_temps(folder, recursive=False)
    rows, written = [], 0
    for i in range(opts["n_rir"]):
        path = os.path.abspath(os.path.join(folder, f"room_{i + 1:03d}.wav"))
        rng = seeded_rng(opts["seed"], "rirset", i)
        h = room_rir(rng, rng.uniform(0.08, 0.7), rng.uniform(0.5, 4.0), 10)
        h = 0.9 * h[: int(0.8 * FS)]
        if not os.path.exists(path):
            write_wav(path, h, FS)
            written += 1
        rows.append((path, len(h)))
    write_text(os.path.join(root, "rir.csv"), _csv_rows(rows))
    return written
