"""Speaker-verification evaluation: trial lists, embedding extraction,
cosine scoring with cohort normalisation, EER/minDCF, plots.

minDCF values returned by :func:`eer_mindcf` and written by
:func:`evaluate_verification` are normalised; :func:`minDCF` mirrors
SpeechBrain's un-normalised one.
"""

from speechbrain_ssv.eval.baselines import MFCCMeanEncoder
from speechbrain_ssv.eval.embeddings import extract_embeddings
from speechbrain_ssv.eval.metrics import EER, det_curve, eer_mindcf, minDCF
from speechbrain_ssv.eval.plots import plot_det, plot_score_histogram, plot_tsne
from speechbrain_ssv.eval.scoring import (
    cohort_stats,
    cosine_scores,
    normalize_scores,
)
from speechbrain_ssv.eval.trials import (
    Trial,
    check_trial_files,
    index_trials,
    read_trials,
)
from speechbrain_ssv.eval.verification import (
    evaluate_verification,
    utt_to_wav_from_csv,
)
