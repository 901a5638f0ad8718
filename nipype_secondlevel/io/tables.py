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


def write_inputs_table(table, path, source=None):
    """Write an inputs table as TSV, atomically, with a JSON sidecar saying where it came
    from (``source``: e.g. the BIDS folder and the filters); returns the TSV's path.

    ``--inputs`` reads it back as it was (absolute paths), so a run is reproducible from it.
    """
    from .files import save_tsv
    from .sidecars import generated_by, write_sidecar

    out = save_tsv(table, path)
    write_sidecar(out, {"Description": "inputs table: one row per first-level map",
                        "Source": source or {}, "GeneratedBy": generated_by("inputs")})
    return out
