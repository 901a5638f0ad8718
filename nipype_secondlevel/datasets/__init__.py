"""Data sources of the reference analysis: the simulated paired sample and the
Localizer's first-level variances (arrays)."""
