"""Losses as pure functions, one module per method family."""
