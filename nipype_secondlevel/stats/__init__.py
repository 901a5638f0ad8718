"""Layer 1: plain numpy/scipy functions on arrays. No Nipype, no files."""
