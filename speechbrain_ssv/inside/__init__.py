"""INSIDE: synthetic speaker identities interpolated in a TTS embedding space.

Liu et al., "Interpolating Speaker Identities in Embedding Space for Data
Expansion" (arXiv 2508.19210). The TTS-independent modules import without
coqui-tts:

* :mod:`~speechbrain_ssv.inside.slerp`: spherical interpolation of speaker
  embeddings;
* :mod:`~speechbrain_ssv.inside.pairing`: genders, speaker means, chunked /
  approximate nearest neighbours, layered nearest-neighbour pairs
  (INSIDE-NN) and random pairs (INSIDE-Syn);
* :mod:`~speechbrain_ssv.inside.manifest`: synthetic speaker ids, the pairs
  table and merging synthetic utterances into a training manifest.

The YourTTS adapter and the synthesis loop (``tts``, ``synthesize``) need
coqui-tts and are imported explicitly, never from here.
"""
