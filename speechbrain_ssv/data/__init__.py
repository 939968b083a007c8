"""Dataset preparation (VoxCeleb, FFSVC), audio reading, generated text and
DynamicItemDataset pipelines and samplers; the corpus generator is
:mod:`speechbrain_ssv.minivox`."""
