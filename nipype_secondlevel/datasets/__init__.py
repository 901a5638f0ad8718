"""Data sources of the reference analysis: the simulated paired sample (arrays)."""
