"""Jobs: one module per job (check, load, compute, write, return a result dataclass)."""
