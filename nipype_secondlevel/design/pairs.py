"""Paired designs: which two rows of a design are one subject's two conditions."""

import numpy as np

from ..io.errors import bad_input


def paired_rows(design, weights, where="design matrix"):
    """Rows (first, second) of every subject, so that the test is of Y[first] - Y[second].

    ``design`` is a paired design (:func:`~.matrices.paired_design`): a 1/0
    condition column, then one indicator column per subject; each subject has
    one row of each condition. The contrast must weight the condition column
    only; a negative weight tests the reverse difference (second minus first).

    Parameters
    ----------
    design : DataFrame (2 n, 1 + n)
    weights : array (q, 1 + n) or (1 + n,)
        Contrast rows (as :func:`~.contrasts.parse_contrast`).

    Returns
    -------
    first, second : ndarrays of int (n,), subjects in column order
    """
    rows = np.atleast_2d(np.asarray(weights, dtype=float))
    if rows.shape[0] != 1 or rows[0, 0] == 0 or np.any(rows[0, 1:] != 0):
        raise bad_input("contrast", f"a paired test weights the condition column "
                        f"{design.columns[0]} only (one row), got {rows.tolist()}")
    condition = design.iloc[:, 0].to_numpy(dtype=float)
    subjects = design.iloc[:, 1:].to_numpy(dtype=float)
    if subjects.shape[1] == 0 or not np.all(subjects.sum(axis=1) == 1) \
            or not np.all(np.isin(condition, (0.0, 1.0))):
        raise bad_input(where, "not a paired design (a 1/0 condition column, then one "
                        "indicator column per subject)")
    subject = subjects.argmax(axis=1)
    first, second = [], []
    for s in range(subjects.shape[1]):
        mine = np.flatnonzero(subject == s)
        ones, zeros = mine[condition[mine] == 1], mine[condition[mine] == 0]
        if ones.size != 1 or zeros.size != 1:
            raise bad_input(where, f"subject column {design.columns[s + 1]} does not have "
                            "one row per condition")
        first.append(ones[0])
        second.append(zeros[0])
    first, second = np.array(first), np.array(second)
    return (first, second) if rows[0, 0] > 0 else (second, first)
