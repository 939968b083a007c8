"""Corpus generation (minivox), dataset preparation and audio pipelines."""
