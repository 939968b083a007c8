"""INSIDE: synthetic speaker identities interpolated in a TTS embedding space.

Liu et al., "Interpolating Speaker Identities in Embedding Space for Data
Expansion" (arXiv 2508.19210). The TTS-independent modules import without
coqui-tts:

* :mod:`~speechbrain_ssv.inside.slerp`: spherical interpolation of speaker
  embeddings;
* :mod:`~speechbrain_ssv.inside.gender`: speaker genders from metadata or
  manifests, gender-classification data and scores;
* :mod:`~speechbrain_ssv.inside.neighbours`: chunked / approximate cosine
  nearest neighbours (torch or faiss);
* :mod:`~speechbrain_ssv.inside.pairing`: speaker means, layered
  nearest-neighbour pairs (INSIDE-NN), random pairs (INSIDE-Syn) and the
  SLERP d-vectors of the pairs;
* :mod:`~speechbrain_ssv.inside.manifest`: synthetic speaker ids, the pairs
  table, merging synthetic utterances into a training manifest, manifest
  subsets and the synthetic dev split;
* :mod:`~speechbrain_ssv.inside.synthesis_plan`: texts, identities, shards
  and the seeded per-utterance plan of a synthesis.

The YourTTS adapter (``tts``, ``release``, ``speaker_encoder``), the
synthesis loop (``synthesize``) and the tiny test checkpoint (``tiny``) use
coqui-tts only when a model is loaded or built; they import without it but
are imported explicitly, never from here. The recipe's stages (embed, pair,
synthesize, merge, diagnostics) live in ``recipes/VoxCeleb/INSIDE/train.py``.
"""
