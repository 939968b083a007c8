"""speechbrain-ssv: self-supervised and data-expansion speaker verification
methods for SpeechBrain's ECAPA-TDNN.

The package is layered (imports only point downward)::

    brains/            one Brain subclass per method (orchestration)
    lobes/ losses/     nn.Modules and the math as pure functions
    data/ eval/        corpus generation, preparation, scoring, metrics, plots
    utils/             atomic file writes and error types
"""

__version__ = "0.1.0"
