"""Input tables, design matrices and contrast specifications (pandas only).

An *inputs table* has one row per map: ``subject``, ``condition`` and
``path``. Relative paths are read relative to the table's folder.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import bad_input

REQUIRED_COLUMNS = ("subject", "condition", "path")


def read_inputs_table(path):
    """Read and check an inputs table; return it with absolute paths.

    Raises a one-line :class:`~nipype_secondlevel.errors.InputError` for a
    missing column, a duplicated subject/condition or a missing file.
    """
    from .io import read_table

    path = Path(path).absolute()
    table = read_table(path, "inputs table")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise bad_input(
            f"inputs table {path}",
            f"missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, table.columns))}",
        )
    table = table.copy()
    table["subject"] = table["subject"].astype(str)
    table["condition"] = table["condition"].astype(str)
    duplicated = table.duplicated(["subject", "condition"], keep=False)
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise bad_input(
            f"inputs table {path}",
            f"subject {first['subject']} has more than one map for condition "
            f"{first['condition']}",
        )
    table["path"] = [
        str(p if Path(p).is_absolute() else (path.parent / p).absolute())
        for p in table["path"].astype(str)
    ]
    for row in table.itertuples():
        if not Path(row.path).exists():
            raise bad_input(
                f"inputs table {path}",
                f"map of subject {row.subject}, condition {row.condition} "
                f"not found: {row.path}",
            )
    return table


def paired_design(table, conditions, where="inputs"):
    """Design of a paired test of ``conditions[0]`` against ``conditions[1]``.

    Rows are every subject's map of the first condition, then every subject's
    map of the second, subjects sorted. Columns: the condition column named
    ``"<first>_vs_<second>"`` coded 1 for the first condition and 0 for the
    second, so its estimate is the mean paired difference; then one indicator
    column per subject.

    Returns
    -------
    design : DataFrame (2 n_subjects, 1 + n_subjects)
    paths : list of str, the maps in the design's row order
    """
    first, second = (str(c) for c in conditions)
    if first == second:
        raise bad_input("conditions", f"the two conditions are both {first!r}")
    by_condition = {}
    for condition in (first, second):
        rows = table[table["condition"] == condition]
        if rows.empty:
            known = ", ".join(sorted(table["condition"].unique()))
            raise bad_input(
                where, f"no map for condition {condition!r} (conditions: {known})"
            )
        by_condition[condition] = rows.set_index("subject")["path"]
    subjects_a = set(by_condition[first].index)
    subjects_b = set(by_condition[second].index)
    if subjects_a != subjects_b:
        only_a = sorted(subjects_a - subjects_b)
        only_b = sorted(subjects_b - subjects_a)
        detail = "; ".join(
            f"only in {cond!r}: {', '.join(subs)}"
            for cond, subs in ((first, only_a), (second, only_b))
            if subs
        )
        raise bad_input(
            where,
            f"a paired design needs one map per subject and condition, but "
            f"{first!r} has {len(subjects_a)} maps and {second!r} has "
            f"{len(subjects_b)} ({detail})",
        )
    subjects = sorted(subjects_a)
    if len(subjects) < 2:
        raise bad_input(where, "a paired design needs at least 2 subjects")
    n = len(subjects)
    condition_column = np.r_[np.ones(n), np.zeros(n)]
    subject_columns = np.vstack([np.eye(n), np.eye(n)])
    design = pd.DataFrame(
        np.column_stack([condition_column, subject_columns]),
        columns=[f"{first}_vs_{second}", *subjects],
    )
    paths = [by_condition[first][s] for s in subjects] + [
        by_condition[second][s] for s in subjects
    ]
    return design, paths


def contrast_weights(contrast, columns):
    """Contrast weights from a column name, an expression or a list of weights.

    Expressions use column names, e.g. ``"vertical - horizontal"``. An unknown
    name gives an error listing the design's columns.
    """
    from nilearn.glm import expression_to_contrast_vector

    columns = [str(c) for c in columns]
    if not isinstance(contrast, str):
        weights = np.asarray(contrast, dtype=float).ravel()
        if weights.size != len(columns):
            raise bad_input(
                "contrast",
                f"{weights.size} weights given but the design has "
                f"{len(columns)} columns ({', '.join(columns)})",
            )
        return weights
    try:
        weights = expression_to_contrast_vector(contrast, columns)
    except Exception as err:
        raise bad_input(
            f"contrast {contrast!r}",
            f"not a column or an expression of columns; the design's columns "
            f"are {', '.join(columns)}",
        ) from err
    weights = np.asarray(weights, dtype=float).ravel()
    if weights.size != len(columns) or not np.any(weights):
        raise bad_input(
            f"contrast {contrast!r}",
            f"gives no weights on the design's columns ({', '.join(columns)})",
        )
    return weights


def contrast_label(contrast):
    """A BIDS-safe camelCase label: ``"vertical_vs_horizontal"`` -> ``verticalVsHorizontal``."""
    text = str(contrast).replace("-", " minus ").replace("+", " plus ")
    words = [w for w in re.split(r"[^0-9A-Za-z]+", text) if w]
    if not words:
        raise bad_input(f"contrast name {contrast!r}", "has no letters or digits")
    return words[0][0].lower() + words[0][1:] + "".join(
        w[0].upper() + w[1:] for w in words[1:]
    )
