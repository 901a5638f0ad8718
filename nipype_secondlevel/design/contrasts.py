"""Contrast specifications: column names, expressions, JSON weights, F rows, labels."""

import hashlib
import json
import re

import numpy as np

from ..io.errors import bad_input


def contrast_weights(contrast, columns):
    """Contrast weights from a column name, an expression or a list of weights.

    Expressions use column names, e.g. ``"vertical - horizontal"``. An unknown
    name gives an error listing the design's columns.
    """
    columns = [str(c) for c in columns]
    if isinstance(contrast, str) and contrast in columns:
        # nilearn's first case, without importing nilearn.glm before the run
        return np.eye(len(columns))[columns.index(contrast)]
    if not isinstance(contrast, str):
        weights = np.asarray(contrast, dtype=float).ravel()
        if weights.size != len(columns):
            raise bad_input(
                "contrast",
                f"{weights.size} weights given but the design has "
                f"{len(columns)} columns ({', '.join(columns)})",
            )
        return check_weights(weights, contrast)
    from nilearn.glm import expression_to_contrast_vector

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
    return check_weights(weights, contrast)


#: Largest contrast weight: beyond, effects and variances overflow; t, z and p do not
#: depend on the contrast's scale, so a smaller one loses nothing.
MAX_WEIGHT = 1e12


def check_weights(weights, contrast):
    """Refuse weights that are not finite numbers, or larger than :data:`MAX_WEIGHT`."""
    weights = np.asarray(weights, dtype=float)
    listed = ", ".join(f"{w:g}" for w in weights.ravel())
    what = f"contrast {contrast!r}" if isinstance(contrast, str) else f"contrast [{listed}]"
    if not np.all(np.isfinite(weights)):
        raise bad_input(what, f"gives a weight that is not a finite number ({listed})")
    if np.abs(weights).max(initial=0.0) > MAX_WEIGHT:
        raise bad_input(what, f"has a weight beyond +/-{MAX_WEIGHT:g}, "
                        "which would overflow the effect and its variance; scale it down (t, "
                        "z and p do not depend on the contrast's scale)")
    return weights


def cluster_forming_value(p, dof, statistic="t", tail="two-sided"):
    """The cluster-forming threshold of uncorrected ``p`` (t with ``dof``, or the z of F:
    :func:`~nipype_secondlevel.stats.spatial.cluster_forming_threshold`), refused in one
    line when ``p`` is so small that it is infinite (every voxel would be "significant")."""
    from ..stats.spatial import cluster_forming_threshold

    value = cluster_forming_threshold(p, dof, tail, statistic)
    if not np.isfinite(value) or value <= 0:
        raise bad_input(f"--cluster-forming-p {p:g}", f"is so small that the cluster-forming "
                        f"threshold is infinite ({'t' if statistic == 't' else 'z'} with "
                        f"{dof:g} degrees of freedom); choose a larger p")
    return value


#: Longest contrast label: it is part of every file name of the contrast, and a file
#: name has at most 255 bytes (``contrast-<label>_stat-z_desc-thresholded_statmap.nii.gz``
#: and the temporary folder it is written in add about 60).
MAX_LABEL = 64


def contrast_label(contrast):
    """A BIDS-safe camelCase label: ``"vertical_vs_horizontal"`` -> ``verticalVsHorizontal``.

    A label longer than :data:`MAX_LABEL` keeps its start and ends with 8 hexadecimal
    digits of its sha256, so that it stays the same from run to run and two long labels
    sharing their start still differ.
    """
    text = str(contrast).replace("-", " minus ").replace("+", " plus ")
    words = [w for w in re.split(r"[^0-9A-Za-z]+", text) if w]
    if not words:
        raise bad_input(f"contrast name {contrast!r}", "has no letters or digits")
    label = words[0][0].lower() + words[0][1:] + "".join(
        w[0].upper() + w[1:] for w in words[1:]
    )
    return short_label(label)


def short_label(label):
    """``label``, or its first characters and a hash of it when longer than MAX_LABEL."""
    if len(label) <= MAX_LABEL:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"{label[:MAX_LABEL - 9]}H{digest}"


_NAMED = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*=(?!=)\s*(.+)$", re.DOTALL)


def _weights_label(rows):
    parts = ["".join(f"{w:g}" for w in row) for row in rows]
    text = ("c" if len(rows) == 1 else "f") + "x".join(parts)
    return short_label(text.replace("-", "m").replace(".", "p").replace("+", ""))


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
