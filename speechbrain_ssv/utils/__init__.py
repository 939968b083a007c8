"""Small utilities shared by every layer (atomic writes, error types)."""
