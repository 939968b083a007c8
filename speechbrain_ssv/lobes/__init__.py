"""Trainable building blocks: projection heads, prototypes, EMA teacher."""
