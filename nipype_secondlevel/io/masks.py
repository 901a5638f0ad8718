"""What the group mask is made from: one pass over the maps (mean, coverage, non-finite
voxels), nilearn's default mask, and a mask moved to the maps' grid."""

import warnings
from typing import NamedTuple

import nibabel as nib
import numpy as np

from .errors import InputWarning, bad_input
from .images import check_same_grid, load_img, read_data


class NonFiniteWarning(InputWarning):
    """Voxels NaN or infinite in some input map were left out of the analysis mask."""


class MapSummary(NamedTuple):
    """What :func:`summarize_maps` learns from one pass over the maps."""

    mean_img: object  # voxelwise mean of the effect maps (NaN where one is NaN)
    coverage: np.ndarray  # fraction of the effect maps finite and non-zero at each voxel
    non_finite: np.ndarray  # NaN or infinite in at least one map (effect or variance)
    with_data: np.ndarray  # finite and non-zero in at least one effect map
    example: str  # the first map with a non-finite voxel (None if there is none)


def summarize_maps(paths, variance_paths=()):
    """Mean, coverage and non-finite voxels of the maps, reading each map once.

    A voxel is valid in a map when it is finite and non-zero. An effect map
    with no valid voxel (all 0, or all NaN) and a variance map with no finite
    value are one-line errors naming the file.
    """
    first = load_img(paths[0], "input map")
    shape, affine = first.shape[:3], first.affine
    total = np.zeros(shape)
    valid = np.zeros(shape)
    non_finite = np.zeros(shape, bool)
    example = None
    maps = [(p, "input map") for p in paths] + [(p, "variance map") for p in variance_paths]
    for path, what in maps:
        img = load_img(path, what)
        check_same_grid(img, shape, affine, path)
        data = read_data(img, path, what).reshape(shape).astype(float)
        finite = np.isfinite(data)
        if not finite.any():
            raise bad_input(f"{what} {path}", "has no finite value (every voxel is NaN or "
                            "infinite)")
        if not finite.all():
            non_finite |= ~finite
            example = example or str(path)
        if what == "input map":
            if not np.any(data[finite]):
                raise bad_input(f"{what} {path}", "is 0 in every voxel (an empty map)"
                                if finite.all() else "is 0 wherever it is not NaN")
            total += data
            valid += finite & (data != 0)
    return MapSummary(nib.Nifti1Image(total / len(paths), affine), valid / len(paths),
                      non_finite, valid > 0, example)


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
