"""One Brain subclass per method: orchestration only."""
