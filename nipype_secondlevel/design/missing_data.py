"""Missing values on the workflow's files (the design layer's view of
:mod:`..stats.coverage`): the masked data read with NaN where a value is missing, every
voxel fitted with the subjects present there, the fit saved for the contrasts, the count
map.

Complete data never come here past :func:`read_missing` (the estimate nodes keep
today's code); with a value missing anywhere, the estimate node calls
:func:`fit_missing_values`, whose saved fit (:func:`load_coverage_fit`) gives the
contrast node each voxel's maps on its own degrees of freedom. ``settings`` is the
estimate node's ``coverage`` input, from the plan: ``min_subjects``, ``subjects`` (of
every row), ``contrasts`` (a voxel is analysed where all are estimable; none: where the
design has full rank, so that adding a contrast does not rerun the estimate),
``zeros_without_variance``, ``variance_files`` (named in messages),
``positive_variances`` (refuse a variance of 0 beside an effect, as the workflow does;
else only negative or infinite ones, which the REML code cannot take) and
``whole_subjects`` (a paired design: where one of a subject's maps is missing, all are).
"""

import warnings
from itertools import repeat

import numpy as np

from ..io.errors import InputWarning, bad_input
from ..io.files import save_arrays, save_img
from ..io.images import unmask
from ..io.masked_data import iter_voxel_chunks, masked_data_shape
from ..io.naming import BETA_NAME
from ..io.sidecars import generated_by, source_fields, write_sidecar
from ..stats.coverage import CoverageFit, fit_with_missing
from ..stats.missing import (
    drop_incomplete_subjects,
    mark_missing,
    missing_patterns,
    missing_values,
    unusable_variances,
)

#: The options that leave voxels out of the analysis (named in messages).
COVERAGE_OPTIONS = "--min-coverage, --min-subjects, --mask"


class TooFewWarning(InputWarning):
    """Voxels of the mask not analysed: too few subjects, or a design not estimable there."""


def read_missing(data_file, variance_file, chunk, mask, settings, weighted):
    """The masked data whole, NaN where missing, or (None, None) when no value is missing.

    One pass over the voxel chunks finds missing values, and (``weighted``) variances of 0
    or less, or infinite, beside a present effect: a one-line error naming the variance
    map, the first voxel and the options that help.
    """
    zeros = bool(settings.get("zeros_without_variance"))
    n_maps = masked_data_shape(data_file)[0]
    variance_chunks = (iter_voxel_chunks(variance_file, chunk) if variance_file
                       else repeat((None, None)))
    any_missing = False
    unusable = np.zeros(n_maps, dtype=int)
    first = {}
    for (where, Y), (_, V) in zip(iter_voxel_chunks(data_file, chunk), variance_chunks):
        any_missing = any_missing or bool(missing_values(Y, V, zeros).any())
        if weighted:
            bad = unusable_variances(Y, V, zeros)
            if not settings.get("positive_variances"):
                bad &= V != 0
            unusable += bad.sum(axis=1)
            for row in np.flatnonzero(bad.any(axis=1)):
                col = int(np.flatnonzero(bad[row])[0])
                first.setdefault(int(row), (where.start + col, float(V[row, col])))
    if unusable.any():
        row = int(np.flatnonzero(unusable)[0])
        column, value = first[row]
        names = list(settings.get("variance_files") or [])
        voxel = tuple(int(v) for v in np.argwhere(mask)[column])
        raise bad_input(
            f"variance map {names[row] if row < len(names) else f'of row {row + 1}'}",
            f"has a variance of 0 or less, or infinite, at {int(unusable[row])} voxel(s) of "
            f"the analysis mask where its effect is present (first: {value:g} at voxel "
            f"{voxel}); mixed and fixed effects need a positive variance wherever a map "
            f"has a value: fix the map, leave those voxels out ({COVERAGE_OPTIONS}) or use "
            "--estimation ols")
    if not any_missing:
        return None, None
    Y, V = mark_missing(np.load(data_file), np.load(variance_file) if variance_file else None,
                        zeros)
    if settings.get("whole_subjects"):
        Y, V = drop_incomplete_subjects(Y, V, settings["subjects"])
    return Y, V


def fit_missing_values(X, Y, V, method, settings, first_level_dof, out, mask, affine,
                       sources, progress=None):
    """Every voxel fitted with the maps present there; the outputs the estimate nodes
    share, written in ``out``: ``beta`` (0 where a voxel is not analysed), ``dof`` (the
    median over the voxels analysed), ``coverage_fit``, ``coverage_map``; and the fit.

    Warns (one line) with the number of voxels of the mask left out; ``progress`` as
    :func:`~..stats.coverage.fit_with_missing`'s.
    """
    fit = fit_with_missing(
        X, Y, V, method=method, min_subjects=settings.get("min_subjects"),
        contrasts=settings.get("contrasts") or None, first_level_dof=first_level_dof,
        labels=settings.get("subjects") or None, progress=progress)
    if fit.n_too_few or fit.n_not_estimable:
        warnings.warn(
            f"{fit.n_too_few + fit.n_not_estimable} voxel(s) of the mask were not analysed: "
            f"{fit.n_too_few} with too few subjects, {fit.n_not_estimable} where the design "
            f"cannot estimate the contrasts from the subjects present (e.g. a group with no "
            f"subject left); they are 0 in the maps ({COVERAGE_OPTIONS})", TooFewWarning,
            stacklevel=2)
    analysed = fit.dof[fit.analysed]
    results = {
        "beta": save_img(unmask(np.nan_to_num(fit.beta), mask, affine, dtype=np.float64),
                         out / BETA_NAME),
        "dof": float(np.median(analysed)) if analysed.size else 0.0,
        "coverage_fit": _save_fit(out / "coverage_fit.npz", fit, ~np.isnan(Y)),
        "coverage_map": save_count_map(out / "coverage.nii.gz", fit.n_present, mask, affine,
                                       settings, sources),
    }
    return results, fit


def _save_fit(path, fit, present):
    """Save a CoverageFit (and the maps present, (n_maps, n_voxels)) as one .npz."""
    arrays = {name: value for name, value in vars(fit).items()
              if isinstance(value, np.ndarray)}
    for name, value in (fit.kenward_roger or {}).items():
        arrays[f"kenward_roger_{name}"] = value
    return save_arrays(path, method=np.array(fit.method), present=present, **arrays)


def load_coverage_fit(path):
    """The CoverageFit saved by :func:`fit_missing_values` (``coverage_fit``)."""
    with np.load(path) as saved:
        arrays = dict(saved)
    present = arrays.pop("present")
    kenward_roger = {name[len("kenward_roger_"):]: arrays.pop(name)
                     for name in list(arrays) if name.startswith("kenward_roger_")}
    analysed = arrays["analysed"]
    patterns = [p for p in missing_patterns(present) if analysed[p.voxels[0]]]
    return CoverageFit(method=str(arrays.pop("method")), patterns=patterns,
                       kenward_roger=kenward_roger or None, **arrays)


def save_count_map(path, n_present, mask, affine, settings, sources):
    """The number of subjects with a value at every voxel of the mask, as an image with
    its sidecar (``n_present`` a number: the same everywhere, complete data)."""
    n_present = np.broadcast_to(np.asarray(n_present, dtype=np.int16), (int(mask.sum()),))
    saved = save_img(unmask(n_present, mask, affine, dtype=np.int16), path)
    write_sidecar(saved, {
        "Statistic": "n",
        "Description": "subjects with a value (not missing) at every voxel of the mask; a "
        "voxel is analysed with at least MinimumSubjects of them",
        "MinimumSubjects": int(settings.get("min_subjects") or 1),
        **source_fields(sources),
        "GeneratedBy": generated_by("estimate"),
    })
    return saved


def n_subjects(settings, n_maps):
    """The number of subjects (the maps' when the settings do not name them)."""
    return len(set(settings.get("subjects") or [])) or n_maps
