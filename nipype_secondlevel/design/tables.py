"""Input tables, design matrices and contrast specifications (pandas only).

An *inputs table* has one row per map: ``subject``, ``path`` and a
``condition`` and/or ``group`` column, with optional ``variance_path`` and
covariate columns. Relative paths are read relative to the table's folder.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.errors import bad_input
from ..spec import DEFAULTS

REQUIRED_COLUMNS = ("subject", "condition", "path")
#: Label columns, read as text as written (a subject ``01`` stays ``01``); those a table
#: has label the rows of design.tsv, in this order, before the design's columns.
LABEL_COLUMNS = ("subject", "condition", "group")


def read_inputs_table(path, require_condition=True, covariates=(), variances=False):
    """Read and check an inputs table; return it with absolute paths.

    Columns: ``subject``, ``path``, ``condition`` (required unless
    ``require_condition`` is False), optional ``group``, ``variance_path`` and
    covariates. Relative paths (``path``, ``variance_path``) are read relative
    to the table's folder.

    Raises a one-line :class:`~nipype_secondlevel.io.errors.InputError` for a
    missing column, a duplicated subject/condition (subject when there is no
    condition column), a missing file, or a covariate with missing or
    non-numeric values.
    """
    from ..io.tables import absolute_paths, read_table

    path = Path(path).absolute()
    where = f"inputs table {path}"
    table = read_table(path, "inputs table", text_columns=LABEL_COLUMNS)
    required = ("subject", "condition", "path") if require_condition else ("subject", "path")
    missing = [c for c in (*required, *(["variance_path"] if variances else []), *covariates)
               if c not in table.columns]
    if missing:
        raise bad_input(
            where,
            f"missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, table.columns))}",
        )
    table = table.copy()
    for column in ("subject", "condition", "group"):
        if column in table.columns:
            table[column] = table[column].astype(str)
    keys = ["subject", "condition"] if "condition" in table.columns else ["subject"]
    duplicated = table.duplicated(keys, keep=False)
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise bad_input(
            where,
            f"subject {first['subject']} has more than one map for condition "
            f"{first['condition']}" if "condition" in table.columns
            else f"subject {first['subject']} has more than one map (add a condition column)",
        )
    for column in ("path", "variance_path"):
        if column not in table.columns:
            continue
        if table[column].isna().any():
            first = table[table[column].isna()].iloc[0]
            raise bad_input(where, f"{column} of subject {first['subject']} is empty")
        table[column] = absolute_paths(table[column], path.parent)
    for column, what in (("path", "map"), ("variance_path", "variance map")):
        if column not in table.columns:
            continue
        found = [os.path.exists(p) for p in table[column]]
        if not all(found):
            row = table.iloc[found.index(False)]
            of = f"subject {row['subject']}" + (
                f", condition {row['condition']}" if "condition" in row else "")
            raise bad_input(where, f"{what} of {of} not found: {row[column]}")
    covariate_values(table, covariates, center=False, where=where)
    return table


def covariate_values(table, covariates, center=True, where="inputs"):
    """Covariate columns of ``table`` as floats, mean-centred unless ``center`` is False.

    A missing column, a missing value or a non-numeric value is a one-line error
    naming the covariate and the first subject concerned.
    """
    frame = pd.DataFrame(index=table.index)
    for name in covariates:
        if name not in table.columns:
            raise bad_input(where, f"covariate {name!r} is not a column; the table has "
                            f"{', '.join(map(str, table.columns))}")
        raw = table[name]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = table[bad].iloc[0]
            problem = ("a missing value" if pd.isna(raw[bad].iloc[0])
                       else f"a non-numeric value {raw[bad].iloc[0]!r}")
            raise bad_input(where, f"covariate {name!r} has {problem} "
                            f"(subject {row['subject']}; {int(bad.sum())} bad value(s))")
        values = values.astype(float)
        frame[str(name)] = values - values.mean() if center else values
    return frame


def select_condition(table, condition, where="inputs", design=DEFAULTS["design"]):
    """Rows of one condition; the whole table when it has no or one condition."""
    if "condition" not in table.columns:
        if condition is not None:
            raise bad_input(where, f"condition {condition!r} asked for but the table has "
                            "no condition column")
        return table
    known = sorted(table["condition"].unique())
    if condition is None:
        if len(known) == 1:
            return table
        raise bad_input(where, f"a {design} design uses the maps of one condition but the "
                        f"table has {', '.join(known)}; choose one (--conditions)")
    rows = table[table["condition"] == str(condition)]
    if rows.empty:
        raise bad_input(where, f"no map for condition {condition!r} (conditions: "
                        f"{', '.join(known)})")
    return rows


def block_labels(rows, column, where="inputs"):
    """Exchangeability-block label of every row (``rows`` in the design's row order).

    ``column`` is a table column (e.g. ``block``, or ``subject`` for repeated
    measures); a permutation test permutes rows only within their block. A
    missing column or a missing value is a one-line error.
    """
    if column not in rows.columns:
        raise bad_input(where, f"exchangeability-block column {column!r} is not a column; "
                        f"the table has {', '.join(map(str, rows.columns))}")
    values = rows[column]
    if values.isna().any():
        first = rows[values.isna()].iloc[0]
        raise bad_input(where, f"exchangeability-block column {column!r} is empty for "
                        f"subject {first['subject']}")
    return [str(v) for v in values]
