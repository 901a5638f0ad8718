"""Input tables, design matrices and contrast specifications (pandas only).

An *inputs table* has one row per map: ``subject``, ``path`` and a
``condition`` and/or ``group`` column, with optional ``variance_path`` and
covariate columns. Relative paths are read relative to the table's folder.
"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import bad_input

REQUIRED_COLUMNS = ("subject", "condition", "path")


def read_inputs_table(path, require_condition=True, covariates=(), variances=False):
    """Read and check an inputs table; return it with absolute paths.

    Columns: ``subject``, ``path``, ``condition`` (required unless
    ``require_condition`` is False), optional ``group``, ``variance_path`` and
    covariates. Relative paths (``path``, ``variance_path``) are read relative
    to the table's folder.

    Raises a one-line :class:`~nipype_secondlevel.errors.InputError` for a
    missing column, a duplicated subject/condition (subject when there is no
    condition column), a missing file, or a covariate with missing or
    non-numeric values.
    """
    from .io import read_table

    path = Path(path).absolute()
    where = f"inputs table {path}"
    table = read_table(path, "inputs table")
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
        table[column] = [
            str(p if Path(p).is_absolute() else (path.parent / p).absolute())
            for p in table[column].astype(str)
        ]
    for row in table.to_dict("records"):
        of = f"subject {row['subject']}" + (
            f", condition {row['condition']}" if "condition" in row else "")
        for column, what in (("path", "map"), ("variance_path", "variance map")):
            if column in row and not Path(row[column]).exists():
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


# --------------------------------------------------------------------------
# General group designs
# --------------------------------------------------------------------------

#: Design types of :func:`group_design`.
DESIGNS = ("one-sample", "paired", "two-sample", "file")


def select_condition(table, condition, where="inputs", design="one-sample"):
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


def _column_name(label, prefix):
    """A design column name usable in contrast expressions."""
    text = re.sub(r"[^0-9A-Za-z_]+", "_", str(label)).strip("_")
    return text if text.isidentifier() else f"{prefix}_{text}"


def _with_covariates(design, rows, covariates, center, where):
    if covariates:
        values = covariate_values(rows, covariates, center=center, where=where)
        clash = [c for c in values.columns if c in design.columns]
        if clash:
            raise bad_input(where, f"covariate {clash[0]!r} has the name of a design column")
        design = pd.concat([design, values.reset_index(drop=True)], axis=1)
    return design


def one_sample_design(table, covariates=(), center=True, where="inputs"):
    """One-sample design: an ``intercept`` column (plus covariates), rows in table order.

    With mean-centred covariates the intercept is the group mean at the mean
    covariate values; covariate columns are slopes.

    Returns
    -------
    design : DataFrame (n_maps, 1 + n_covariates)
    rows : DataFrame, the table rows in the design's row order
    """
    rows = table.reset_index(drop=True)
    if len(rows) < 2:
        raise bad_input(where, f"a one-sample design needs at least 2 maps, got {len(rows)}")
    design = pd.DataFrame({"intercept": np.ones(len(rows))})
    return _with_covariates(design, rows, covariates, center, where), rows


def two_sample_design(table, groups=None, covariates=(), center=True, where="inputs"):
    """Unpaired design: one indicator column per group (no intercept).

    Each group column's estimate is that group's mean (at the mean covariate
    values when covariates are centred), so ``"a - b"`` is the difference of
    the means. Rows are grouped in ``groups`` order (default: sorted labels),
    table order within a group. A subject in two groups is an error.
    """
    if "group" not in table.columns:
        raise bad_input(where, "a two-sample design needs a group column; the table has "
                        f"{', '.join(map(str, table.columns))}")
    known = sorted(table["group"].unique())
    labels = [str(g) for g in groups] if groups else known
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise bad_input(where, f"a two-sample design needs at least 2 different groups, "
                        f"got {', '.join(labels) or 'none'}")
    parts = []
    for label in labels:
        part = table[table["group"] == label]
        if part.empty:
            raise bad_input(where, f"no map in group {label!r} (groups: {', '.join(known)})")
        parts.append(part)
    rows = pd.concat(parts).reset_index(drop=True)
    twice = rows[rows["subject"].duplicated(keep=False)]
    if not twice.empty:
        subject = twice["subject"].iloc[0]
        raise bad_input(where, f"subject {subject} is in groups "
                        f"{', '.join(sorted(twice[twice.subject == subject].group))}; "
                        "an unpaired design needs each subject in one group")
    names = [_column_name(label, "group") for label in labels]
    if len(set(names)) != len(names):
        raise bad_input(where, f"group labels {', '.join(labels)} give the same column names")
    design = pd.DataFrame(
        {name: (rows["group"] == label).astype(float) for name, label in zip(names, labels)}
    )
    return _with_covariates(design, rows, covariates, center, where), rows


def design_from_file(table, design_file, where="inputs"):
    """A design TSV supplied by the user: one row per table row, table order, numbers only."""
    from .io import read_table

    design = read_table(design_file, "design file")
    what = f"design file {design_file}"
    if len(design) != len(table):
        raise bad_input(what, f"has {len(design)} rows but the inputs table has {len(table)} "
                        "maps (one row per map, in table order)")
    if design.shape[1] == 0:
        raise bad_input(what, "has no columns")
    bad = [str(c) for c in design.columns
           if not np.all(np.isfinite(pd.to_numeric(design[c], errors="coerce")))]
    if bad:
        raise bad_input(what, f"column(s) {', '.join(bad)} have missing or non-numeric values")
    design = design.apply(pd.to_numeric).astype(float)
    design.columns = [str(c) for c in design.columns]
    return design, table.reset_index(drop=True)


def check_estimable(design, where="design"):
    """Raise a one-line error for a rank-deficient design or one with no residual dof.

    The error names the columns involved: those with weight in the design's
    null space (the linearly dependent ones).
    """
    X = design.to_numpy(dtype=float)
    n, p = X.shape
    rank = int(np.linalg.matrix_rank(X))
    columns = [str(c) for c in design.columns]
    zero = [c for c, column in zip(columns, X.T) if not np.any(column)]
    if zero:
        raise bad_input(where, f"the design is rank deficient: column(s) {', '.join(zero)} "
                        "are zero in every row (a covariate with one value?)")
    if rank < p:
        _, _, vt = np.linalg.svd(X)
        null = vt[rank:]
        involved = [c for c, w in zip(columns, np.abs(null).max(axis=0)) if w > 1e-8]
        raise bad_input(where, f"the design is rank deficient (rank {rank} < {p} columns): "
                        f"columns {', '.join(involved)} are linearly dependent")
    if n - rank < 1:
        raise bad_input(where, f"the design leaves no residual degrees of freedom: {n} maps "
                        f"for {p} columns ({', '.join(columns)})")


def group_design(table, design="one-sample", conditions=None, groups=None, covariates=(),
                 center=True, design_file=None, where="inputs"):
    """The design matrix and the maps, in row order, for any design of :data:`DESIGNS`.

    Parameters
    ----------
    table : DataFrame
        Inputs table as returned by :func:`read_inputs_table`.
    design : {"one-sample", "paired", "two-sample", "file"}
    conditions : list of str or None
        paired: the two conditions (first minus second); one-sample and
        two-sample: at most one, the condition whose maps are used.
    groups : list of str or None
        two-sample: the groups, in column order (default: sorted labels).
    covariates : list of str
        Table columns added as covariates (not with paired or file).
    center : bool
        Mean-centre covariates.
    design_file : path
        design "file": the user's design TSV.

    Returns
    -------
    design : DataFrame
    paths : list of str
    variance_paths : list of str, or None when the table has no variance_path
    default_contrasts : list of str
    """
    conditions = [str(c) for c in conditions] if conditions else []
    if design not in DESIGNS:
        raise bad_input("design", f"must be one of {', '.join(DESIGNS)}, got {design!r}")
    if design in ("paired", "file") and covariates:
        raise bad_input("covariates", f"are not added to a {design} design (put them in a "
                        "design file)" if design == "paired" else "put them in the design file")
    if design != "paired" and len(conditions) > 1:
        raise bad_input("conditions", f"a {design} design uses one condition, got "
                        f"{', '.join(conditions)}")
    condition = conditions[0] if conditions else None
    if design == "paired":
        if "condition" not in table.columns:
            raise bad_input(where, "a paired design needs a condition column")
        if len(conditions) != 2:
            known = sorted(table["condition"].unique())
            if conditions or len(known) != 2:
                raise bad_input("conditions", "a paired design compares two conditions; "
                                f"choose them among {', '.join(known)} (--conditions A B)")
            conditions = known
        matrix, paths = paired_design(table, conditions, where=where)
        lookup = table.set_index("path")
        rows = lookup.loc[paths].reset_index()
        defaults = [str(matrix.columns[0])]
    elif design == "file":
        if design_file is None:
            raise bad_input("design", "'file' needs a design file (--design-file)")
        matrix, rows = design_from_file(table, design_file, where=where)
        defaults = [str(matrix.columns[0])]
    elif design == "one-sample":
        rows = select_condition(table, condition, where, design)
        matrix, rows = one_sample_design(rows, covariates, center, where)
        defaults = ["intercept"]
    else:
        rows = select_condition(table, condition, where, design)
        matrix, rows = two_sample_design(rows, groups, covariates, center, where)
        names = [str(c) for c in matrix.columns[: len(matrix.columns) - len(covariates)]]
        defaults = [f"{names[0]} - {names[1]}" if len(names) == 2
                    else "; ".join(f"{names[0]} - {other}" for other in names[1:])]
    check_estimable(matrix, where=f"{design} design")
    paths = [str(p) for p in rows["path"]]
    variances = [str(p) for p in rows["variance_path"]] if "variance_path" in rows else None
    return matrix, paths, variances, defaults


_NAMED = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*=(?!=)\s*(.+)$", re.DOTALL)


def _weights_label(rows):
    parts = ["".join(f"{w:g}" for w in row) for row in rows]
    text = ("c" if len(rows) == 1 else "f") + "x".join(parts)
    return text.replace("-", "m").replace(".", "p").replace("+", "")


def parse_contrast(spec, columns):
    """A contrast specification -> (label, weights (q, n_columns), "t" or "F").

    ``spec`` is a column name, an expression of columns (``"a - b"``), several
    expressions separated by ``;`` (an F contrast, one row each:
    ``"a - b; a - c"``), or JSON weights: a list of numbers (t) or a list of
    rows (F). ``"name=<spec>"`` sets the label used in file names; otherwise it
    is derived from the spec. A list of numbers (not a string) is t weights.
    """
    columns = [str(c) for c in columns]
    name = None
    if isinstance(spec, str):
        match = _NAMED.match(spec)
        if match:
            name, spec = match.group(1), match.group(2).strip()
        spec = spec.strip()
        if spec.startswith("["):
            try:
                spec = json.loads(spec)
            except ValueError as err:
                raise bad_input(f"contrast {spec!r}", "is not valid JSON weights") from err
    if isinstance(spec, str):
        parts = [part.strip() for part in spec.split(";") if part.strip()]
        if not parts:
            raise bad_input("contrast", "is empty")
        rows = np.vstack([contrast_weights(part, columns) for part in parts])
        label = contrast_label(name or spec.replace(";", " and "))
    else:
        rows = np.atleast_2d(np.asarray(spec, dtype=float))
        if rows.ndim != 2:
            raise bad_input(f"contrast {spec!r}", "weights must be a list or a list of rows")
        rows = np.vstack([contrast_weights(list(row), columns) for row in rows])
        label = contrast_label(name) if name else _weights_label(rows)
    if not np.all(np.any(rows != 0, axis=1)):
        raise bad_input(f"contrast {label}", "has a row of zero weights")
    if len(rows) > 1 and np.linalg.matrix_rank(rows) < len(rows):
        raise bad_input(f"contrast {label}", f"its {len(rows)} rows are linearly dependent")
    return label, rows, ("F" if len(rows) > 1 else "t")


def parse_contrasts(specs, columns):
    """Parse several contrasts; their labels (file names) must differ."""
    parsed = [parse_contrast(spec, columns) for spec in specs]
    labels = [label for label, _, _ in parsed]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise bad_input("contrasts", f"two contrasts have the label {twice[0]}; name them "
                        "(e.g. \"name=a - b\")")
    return parsed
