"""Inputs tables, design matrices and contrast specifications (pandas and numpy, no files
written, no Nipype)."""
