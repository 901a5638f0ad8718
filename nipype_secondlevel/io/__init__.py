"""Files: atomic writers, images and masks, tables, the masked data file, sidecars and the
one-line user errors."""
