"""Reading TSV and CSV tables with one-line errors."""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import bad_input


def read_table(path, what="table", text_columns=(), allow_no_rows=False):
    """Read a TSV (or CSV, by its extension) table, with a one-line error naming it if it
    cannot be read, is empty or has a header but no rows (unless ``allow_no_rows``).

    ``text_columns`` are read as text, as written (a subject ``01`` stays ``01``).
    """
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype={c: str for c in text_columns})
    except pd.errors.EmptyDataError as err:
        raise bad_input(f"{what} {path}", "is empty (no header, no rows)") from err
    except Exception as err:
        raise bad_input(f"{what} {path}", f"cannot be read as a table ({err})") from err
    if table.empty and not (allow_no_rows and len(table.columns)):
        raise bad_input(f"{what} {path}", f"has no rows, only a header "
                        f"({', '.join(map(str, table.columns))})")
    twice = _duplicated_columns(path, sep)
    if twice:
        raise bad_input(f"{what} {path}", f"has {len(twice)} column name(s) given twice "
                        f"({', '.join(twice)}): which one is meant is unknown; keep one of each")
    return table


def _duplicated_columns(path, sep):
    """Column names the header line of the table gives more than once (pandas would
    rename the second ``name.1`` and read on)."""
    import csv
    from collections import Counter

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    return sorted(name for name, count in Counter(header).items() if count > 1)


def read_design(path):
    """Design matrix TSV -> (DataFrame, float array), with a clear error if bad."""
    design = read_table(path, "design matrix")
    try:
        X = design.to_numpy(dtype=float)
    except ValueError as err:
        raise bad_input(f"design matrix {path}", "has non-numeric values") from err
    if not np.all(np.isfinite(X)):
        raise bad_input(f"design matrix {path}", "has missing or infinite values")
    return design, X


def absolute_paths(values, folder):
    """Paths of a table column as absolute path strings (as pathlib writes them); relative
    ones are read from ``folder`` (the table's folder)."""
    folder = str(Path(folder).absolute())
    return [_absolute(p, folder) for p in map(str, values)]


def _absolute(path, folder):
    """``str(folder / path)`` without pathlib's cost where joining already gives it (100,000
    rows in 0.1 s instead of 7 s): no empty or '.' component to drop."""
    if os.path.isabs(path):
        return path
    joined = f"{folder}/{path}"
    if "//" in joined or "/./" in joined or joined.endswith(("/", "/.")):
        return str(Path(folder) / path)
    return joined


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
