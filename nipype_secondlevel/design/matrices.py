"""Design matrices of group designs: one-sample, paired, two-sample, a user's file."""

import re
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..io.errors import bad_input
from ..spec import DEFAULTS, DESIGNS
from .tables import LABEL_COLUMNS, block_labels, covariate_values, select_condition


def paired_design(table, conditions, where="inputs"):
    """Design of a paired test of ``conditions[0]`` against ``conditions[1]``.

    Rows are the maps of the two conditions in the inputs table's order.
    Columns: the condition column named ``"<first>_vs_<second>"`` coded 1 for
    the first condition and 0 for the second, so its estimate is the mean
    paired difference; then one indicator column per subject, in the order
    subjects first appear in the table.

    Returns
    -------
    design : DataFrame (2 n_subjects, 1 + n_subjects)
    rows : DataFrame, the table rows in the design's row order
    """
    first, second = (str(c) for c in conditions)
    if first == second:
        raise bad_input("conditions", f"the two conditions are both {first!r}")
    subjects_of = {}
    for condition in (first, second):
        rows = table[table["condition"] == condition]
        if rows.empty:
            known = ", ".join(sorted(table["condition"].unique()))
            raise bad_input(
                where, f"no map for condition {condition!r} (conditions: {known})"
            )
        subjects_of[condition] = set(rows["subject"])
    subjects_a, subjects_b = subjects_of[first], subjects_of[second]
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
    rows = table[table["condition"].isin([first, second])].reset_index(drop=True)
    codes, subjects = pd.factorize(rows["subject"])  # in order of first appearance
    if len(subjects) < 2:
        raise bad_input(where, "a paired design needs at least 2 subjects")
    check_design_size(len(rows), 1 + len(subjects), where, "paired")
    indicators = np.zeros((len(subjects), len(rows)))
    indicators[codes, np.arange(len(rows))] = 1.0
    condition = _column_name(f"{first}_vs_{second}", "condition")
    design = design_frame(
        [(condition, f"the condition column ({first!r} vs {second!r})",
          (rows["condition"] == first).to_numpy(float))]
        + [(str(s), f"subject {s!r}", column) for s, column in zip(subjects, indicators)],
        where)
    return design, rows




#: Largest design matrix (float64 bytes): a paired design of 50,000 subjects would be
#: 37 GiB; an analysis that large is refused in one line before anything is allocated.
MAX_DESIGN_BYTES = 2**30


def check_design_size(n_rows, n_columns, where, design):
    """Refuse a design matrix larger than :data:`MAX_DESIGN_BYTES`."""
    size = 8 * int(n_rows) * int(n_columns)
    if size > MAX_DESIGN_BYTES:
        hint = (": test each subject's difference map (first condition minus second) with a "
                "one-sample design, the same test" if design == "paired" else "")
        raise bad_input(where, f"a {design} design of {n_rows:,} maps and {n_columns:,} "
                        f"columns is too large ({size / 2**30:.1f} GiB, at most "
                        f"{MAX_DESIGN_BYTES / 2**30:g}){hint}")


def _column_name(label, prefix):
    """A design column name usable in contrast expressions."""
    text = re.sub(r"[^0-9A-Za-z_]+", "_", str(label)).strip("_")
    return text if text.isidentifier() else f"{prefix}_{text}"


def design_frame(columns, where):
    """The design matrix of ``columns``, (name, origin, values) in order: names unique by
    construction.

    Two columns of one name (a subject named like the paired design's condition
    column, two group labels equal once made names, a covariate named like a group)
    are a one-line error naming both origins; so is a name of the row labels of
    design.tsv (:data:`~.tables.LABEL_COLUMNS`), which would be read back as one.
    """
    origin_of = {}
    for name, origin, _ in columns:
        if name in origin_of:
            raise bad_input(where, f"{origin_of[name]} and {origin} both give the design "
                            f"column {name!r}: rename one of them")
        if name in LABEL_COLUMNS:
            raise bad_input(where, f"{origin} gives the design column {name!r}, the name of a "
                            f"row label of design.tsv ({', '.join(LABEL_COLUMNS)}): rename it")
        origin_of[name] = origin
    return pd.DataFrame({name: np.asarray(values, dtype=float) for name, _, values in columns})


def _covariate_columns(rows, covariates, center, where):
    """(name, origin, values) of the covariates, mean-centred if ``center``."""
    values = covariate_values(rows, covariates, center=center, where=where)
    return [(str(name), f"covariate {name!r}", values[str(name)].to_numpy())
            for name in covariates]


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
    columns = [("intercept", "the intercept", np.ones(len(rows)))]
    return design_frame(columns + _covariate_columns(rows, covariates, center, where),
                        where), rows


def two_sample_design(table, groups=None, covariates=(), center=True, where="inputs"):
    """Unpaired design: one indicator column per group (no intercept).

    Each group column's estimate is that group's mean (at the mean covariate
    values when covariates are centred), so ``"a - b"`` is the difference of
    the means. Columns are in ``groups`` order (default: sorted labels); rows
    are the maps of those groups in the table's order. A subject in two groups
    is an error.
    """
    if "group" not in table.columns:
        raise bad_input(where, "a two-sample design needs a group column; the table has "
                        f"{', '.join(map(str, table.columns))}")
    known = sorted(table["group"].unique())
    labels = [str(g) for g in groups] if groups else known
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise bad_input(where, f"a two-sample design needs at least 2 different groups, "
                        f"got {', '.join(labels) or 'none'}")
    for label in labels:
        if not (table["group"] == label).any():
            raise bad_input(where, f"no map in group {label!r} (groups: {', '.join(known)})")
    rows = table[table["group"].isin(labels)].reset_index(drop=True)
    twice = rows[rows["subject"].duplicated(keep=False)]
    if not twice.empty:
        subject = twice["subject"].iloc[0]
        raise bad_input(where, f"subject {subject} is in groups "
                        f"{', '.join(sorted(twice[twice.subject == subject].group))}; "
                        "an unpaired design needs each subject in one group")
    columns = [(_column_name(label, "group"), f"group {label!r}",
                (rows["group"] == label).to_numpy(float)) for label in labels]
    return design_frame(columns + _covariate_columns(rows, covariates, center, where),
                        where), rows


def design_from_file(table, design_file, where="inputs"):
    """A design TSV supplied by the user: one row per table row, table order, numbers only.

    It may start with row-label columns (``subject``, ``condition``, ``group``,
    as the design.tsv this package writes): each row's labels must then be
    those of the table's row, which catches a design in another row order.
    """
    labels, design = read_labelled_design(design_file, "design file")
    what = f"design file {design_file}"
    if len(design) != len(table):
        raise bad_input(what, f"has {len(design)} rows but the inputs table has {len(table)} "
                        "maps (one row per map, in table order)")
    if design.shape[1] == 0:
        raise bad_input(what, "has no columns")
    rows = table.reset_index(drop=True)
    missing = [c for c in labels.columns if c not in rows.columns]
    if missing:
        raise bad_input(what, f"labels its rows by {', '.join(missing)}, a column the inputs "
                        "table does not have")
    ours = rows[list(labels.columns)].astype(str)
    differ = np.flatnonzero((labels.to_numpy() != ours.to_numpy()).any(axis=1))
    if len(differ):
        i = int(differ[0])

        def said(frame):
            return ", ".join(f"{c} {frame[c][i]}" for c in labels.columns)

        raise bad_input(what, f"row {i + 1} is {said(labels)} but the inputs table's row "
                        f"{i + 1} is {said(ours)} (the rows must follow the table)")
    bad = [str(c) for c in design.columns
           if not np.all(np.isfinite(pd.to_numeric(design[c], errors="coerce")))]
    if bad:
        raise bad_input(what, f"column(s) {', '.join(bad)} have missing or non-numeric values")
    design = design_frame([(str(c), f"design file column {str(c)!r}",
                            pd.to_numeric(design[c]).to_numpy(float)) for c in design.columns],
                          what)
    return design, rows


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


class GroupDesignResult(NamedTuple):
    """What :func:`group_design` returns; every list is in the design's row order."""

    matrix: pd.DataFrame
    paths: list
    variance_paths: list  # None when the table has no variance_path
    default_contrasts: list
    blocks: list  # exchangeability-block labels, [] when no block column is given
    row_labels: pd.DataFrame  # subject (and condition, group) of every row


def group_design(table, design=DEFAULTS["design"], conditions=None, groups=None, covariates=(),
                 center=True, design_file=None, blocks=None, where="inputs"):
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
    blocks : str or None
        Table column of the exchangeability blocks (see :func:`block_labels`).

    Returns
    -------
    :class:`GroupDesignResult`
        matrix (DataFrame), paths, variance_paths (None when the table has no
        variance_path), default_contrasts, blocks, row_labels. Rows follow the
        inputs table's order (its rows of the conditions and groups used).
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
        matrix, rows = paired_design(table, conditions, where=where)
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
    labels = block_labels(rows, blocks, where) if blocks else []
    row_labels = rows[[c for c in LABEL_COLUMNS if c in rows.columns]].astype(str)
    return GroupDesignResult(matrix, paths, variances, defaults, labels,
                             row_labels.reset_index(drop=True))


def labelled_design(result):
    """The design matrix with its row labels first (subject, condition, group): design.tsv."""
    return pd.concat([result.row_labels, result.matrix], axis=1)


def read_labelled_design(path, what="design table"):
    """A design TSV, maybe with leading row-label columns (:func:`labelled_design`), as
    (row labels DataFrame, design matrix DataFrame)."""
    from ..io.tables import read_table

    table = read_table(path, what, text_columns=LABEL_COLUMNS)
    n = 0
    while n < table.shape[1] and table.columns[n] in LABEL_COLUMNS:
        n += 1
    return table.iloc[:, :n].astype(str), table.iloc[:, n:]
