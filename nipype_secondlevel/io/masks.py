"""What the group mask is made from: one pass over the maps (sum, coverage, non-finite
voxels; blocks of maps read apart and merged), nilearn's default mask, and a mask moved
to the maps' grid."""

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np

from .errors import InputWarning, bad_input
from .files import atomic_path
from .images import check_same_grid, fits_float32, load_img, read_data
from .masked_data import add_map_row, start_map_rows
from .progress import Progress

#: Maps per block of the mask's pass over the maps (blocks are read in parallel).
MAPS_PER_SUMMARY_BLOCK = 256


class NonFiniteWarning(InputWarning):
    """Voxels NaN or infinite in some input map were left out of the analysis mask."""


class CoverageWarning(InputWarning):
    """Voxels with too few maps present were left out of the analysis mask."""


class MapSummary(NamedTuple):
    """What :func:`summarize_maps` learns from one pass over a block of maps; blocks read
    in parallel are joined by :func:`merge_summaries`."""

    total: np.ndarray  # voxelwise sum of the effect maps where present (float64)
    valid: np.ndarray  # number of effect maps finite and non-zero at each voxel
    non_finite: np.ndarray  # infinite in at least one map (effect or variance)
    n_maps: int  # number of effect maps
    affine: np.ndarray
    first: str  # the block's first map (named if blocks are on different grids)
    example: str  # the first map with a non-finite voxel ("" if there is none)
    present: np.ndarray  # number of maps whose value is present (not missing) at each voxel

    @property
    def mean_img(self):
        """Voxelwise mean of the effect maps present (0 where none is)."""
        mean = np.divide(self.total, self.present, out=np.zeros(self.total.shape),
                         where=self.present > 0)
        return nib.Nifti1Image(mean, self.affine)

    @property
    def coverage(self):
        """Fraction of the effect maps finite and non-zero at each voxel."""
        return self.valid / self.n_maps

    @property
    def with_data(self):
        """Finite and non-zero in at least one effect map."""
        return self.valid > 0


def summarize_maps(paths, variance_paths=(), missing=None, rows_file=None):
    """Sum, coverage, maps present and infinite voxels of the maps, reading each map once.

    A voxel is valid in a map when it is finite and non-zero. ``missing``
    (``missing(effect, variance or None)`` -> bool array, the caller's rule) says where a
    map's value is missing; default: where the effect or its variance is NaN. NaN is a
    missing value, an infinite value (or one beyond float32's range) is invalid. An effect
    map with no valid voxel (all 0, or all NaN) and a variance map with no finite value
    are one-line errors naming the file. ``rows_file``: also write the effect maps' values
    there (:func:`~nipype_secondlevel.io.masked_data.add_map_row`, one pass for the mask
    and the masked data).
    """
    with ExitStack() as stack:
        rows = None if rows_file is None else stack.enter_context(
            open(stack.enter_context(atomic_path(rows_file)), "wb"))
        return _summarize(paths, variance_paths, missing, rows)


def _summarize(paths, variance_paths, missing, rows):
    first = load_img(paths[0], "input map")
    shape, affine = first.shape[:3], first.affine
    total = np.zeros(shape)
    valid = np.zeros(shape, np.int32)
    present = np.zeros(shape, np.int32)
    non_finite = np.zeros(shape, bool)
    example = ""
    variance_paths = list(variance_paths) or [None] * len(paths)
    if rows is not None:
        start_map_rows(rows, paths, shape)
    for path, variance_path in Progress("mask summaries").track(
            zip(paths, variance_paths), len(paths), "maps"):
        data, example = _read_checked(path, "input map", shape, affine, non_finite, example)
        if rows is not None:
            add_map_row(rows, data)
        variance = None
        if variance_path is not None:
            variance, example = _read_checked(variance_path, "variance map", shape, affine,
                                              non_finite, example)
        here = ~(missing(data, variance) if missing else
                 np.isnan(data) | (np.isnan(variance) if variance is not None else False))
        finite = fits_float32(data)
        has_data = np.not_equal(data, 0, out=finite.copy(), where=finite)  # finite, non-zero
        if not has_data.any():
            raise bad_input(f"input map {path}", "is 0 in every voxel (an empty map)"
                            if finite.all() else "is 0 wherever it is not NaN")
        total += data if here.all() else np.where(here & finite, data, 0.0)
        valid += has_data
        present += here & finite
    return MapSummary(total, valid, non_finite, len(paths), affine, str(paths[0]), example,
                      present)


def _read_checked(path, what, shape, affine, non_finite, example):
    """A map's data, its infinite voxels added to ``non_finite`` (in place); (data, the
    first map with one)."""
    img = load_img(path, what)
    check_same_grid(img, shape, affine, path)
    data = read_data(img, path, what).reshape(shape)  # added to float64 as it is
    finite = fits_float32(data)
    if not finite.any():
        raise bad_input(f"{what} {path}", "has no finite value (every voxel is NaN or "
                        "infinite)")
    invalid = ~finite & ~np.isnan(data)
    if invalid.any():
        non_finite |= invalid
        example = example or str(path)
    return data, example


def merge_summaries(summaries):
    """One :class:`MapSummary` of consecutive blocks of maps, as if read in one pass
    (the sum is added block by block: one block gives the same bits)."""
    first, *rest = summaries
    total, valid, non_finite = first.total.copy(), first.valid.copy(), first.non_finite.copy()
    present = first.present.copy()
    for part in rest:
        check_same_grid(nib.Nifti1Image(part.valid, part.affine), total.shape, first.affine,
                        part.first)
        total += part.total
        valid += part.valid
        non_finite |= part.non_finite
        present += part.present
    example = next((part.example for part in summaries if part.example), "")
    return MapSummary(total, valid, non_finite, sum(part.n_maps for part in summaries),
                      first.affine, first.first, example, present)


def write_summary(summary, path):
    """Save a :class:`MapSummary` as an uncompressed ``.npz``, atomically; return the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, total=summary.total, valid=summary.valid, non_finite=summary.non_finite,
                 n_maps=summary.n_maps, affine=summary.affine, first=summary.first,
                 example=summary.example, present=summary.present)
    return str(Path(path).absolute())


def read_summary(path):
    """The :class:`MapSummary` saved by :func:`write_summary`."""
    with np.load(path) as saved:
        return MapSummary(saved["total"], saved["valid"], saved["non_finite"],
                          int(saved["n_maps"]), saved["affine"], str(saved["first"]),
                          str(saved["example"]), saved["present"])


def nilearn_default_mask(mean_img):
    """The mask nilearn's SecondLevelModel computes when given no mask."""
    from nilearn.maskers import NiftiMasker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NiftiMasker().fit(mean_img).mask_img_


def resample_mask(mask_img, reference):
    """Resample a mask to the grid of ``reference`` (nearest neighbour)."""
    from nilearn.image import resample_to_img

    return resample_to_img(
        mask_img, reference, interpolation="nearest",
        force_resample=True, copy_header=True,
    )
