"""Training-time waveform augmentation: in-memory noise/RIR banks,
per-utterance draws (see :mod:`speechbrain_ssv.augment.utterance`) and random
recording channels (see :mod:`speechbrain_ssv.augment.channel`)."""

from speechbrain_ssv.augment.banks import AugmentBank
from speechbrain_ssv.augment.channel import ChannelAugment
from speechbrain_ssv.augment.utterance import CONDITIONS, UtteranceAugment

__all__ = ["AugmentBank", "ChannelAugment", "UtteranceAugment", "CONDITIONS"]
