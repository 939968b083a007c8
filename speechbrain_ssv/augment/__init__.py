"""Training-time waveform augmentation: in-memory noise/RIR banks and
per-utterance draws (see :mod:`speechbrain_ssv.augment.utterance`)."""

from speechbrain_ssv.augment.banks import AugmentBank
from speechbrain_ssv.augment.utterance import CONDITIONS, UtteranceAugment

__all__ = ["AugmentBank", "UtteranceAugment", "CONDITIONS"]
