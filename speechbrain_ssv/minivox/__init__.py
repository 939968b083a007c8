"""minivox: the embedded, generated speaker-verification corpus.

No dataset can be downloaded, so the package synthesises one shaped exactly
like VoxCeleb1 (or, with ``variant="ffsvc"``, like FFSVC) so that the same
preparation and evaluation code reads the real and the generated corpus.

Speakers are seeded espeak-ng voices (:mod:`speechbrain_ssv.minivox.voices`)
reading generated English text (:mod:`speechbrain_ssv.data.text`); every
session of a speaker goes through its own simulated channel (room, device
response, noise, level, small voice drift; :mod:`speechbrain_ssv.minivox.channels`).

Layout written under ``root``::

    wav/<spk_id>/<session_id>/<utt>.wav   16 kHz mono 16-bit PCM, >= 3.2 s
        spk_id      id00001, id00002, ...
        session_id  11 characters of [A-Za-z0-9_-] (YouTube-like)
        utt         00001, 00002, ... per session (voxceleb variant)
                    00001_<DEV>_<cm>, e.g. 00001_MIC_300 (ffsvc variant: one
                    file per simulated device; DEV in CLS close-talk, IPH
                    iPhone, AND Android (8 kHz mu-law codec), IPD iPad, MIC
                    far-field array; cm = distance in centimetres, 000-500)
    meta/vox1_meta.csv    tab-separated, header
                          "VoxCeleb1 ID\\tVGGFace1 ID\\tGender\\tNationality\\tSet",
                          Gender m/f, Set dev (training) or test (held out)
    meta/veri_test2.txt   "<1|0> <spk/session/utt.wav> <spk/session/utt.wav>",
                          held-out (Set=test) speakers only, as many targets
                          as non-targets, target pairs from different sessions
                          where the speaker has them; in the ffsvc variant
                          every trial enrols a CLS file and tests a non-CLS one
    meta/ffsvc_meta.csv   (ffsvc variant) utt,spk,session,device,distance,gender,split
    meta/minivox.json     version, options and seed of the corpus
    noise/*.wav, noise.csv  coloured noise, hum, babble of non-corpus voices
    rir/*.wav, rir.csv      pyroomacoustics rooms; both CSVs have SpeechBrain's
                            ``ID,duration,wav,wav_format,wav_opts`` columns with
                            absolute paths, as read by
                            ``speechbrain.augment.time_domain.AddNoise`` /
                            ``AddReverb(csv_file=...)``

Every random draw comes from a generator seeded with (seed, purpose, speaker,
session, utterance), so output is byte-identical for the same seed and
options whatever the number of workers. Files are written atomically and
existing ones are skipped, so an interrupted run resumes where it stopped.

Command line::

    python -m speechbrain_ssv.minivox --out DIR [--size tiny|default]
        [--variant voxceleb|ffsvc] [--channel none|mild|strong] [--seed N]
        [--workers N]

Modules: :mod:`~speechbrain_ssv.minivox.options` (presets, option checks,
seeded generators), :mod:`~speechbrain_ssv.minivox.plan` (speakers, sessions,
file names, trials), :mod:`~speechbrain_ssv.minivox.render` (speech, noise
and room-impulse-response audio), :mod:`~speechbrain_ssv.minivox.generate`
(the whole corpus), :mod:`~speechbrain_ssv.minivox.voices` and
:mod:`~speechbrain_ssv.minivox.channels`; the command line is
:mod:`speechbrain_ssv.minivox.__main__`.

Authors
 * speechbrain-ssv developers 2026
"""

from speechbrain_ssv.minivox.generate import generate_minivox
from speechbrain_ssv.minivox.options import resolve_options
from speechbrain_ssv.minivox.plan import plan_corpus

__all__ = ["generate_minivox", "plan_corpus", "resolve_options"]
