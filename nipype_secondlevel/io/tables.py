"""Reading TSV and CSV tables with one-line errors."""

from pathlib import Path

import pandas as pd

from .errors import bad_input


def read_table(path, what="table"):
    """Read a TSV (or CSV) table, with a one-line error naming it if it cannot."""
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        return pd.read_csv(path, sep=sep)
    except Exception as err:
        raise bad_input(f"{what} {path}", f"cannot be read as a table ({err})") from err
