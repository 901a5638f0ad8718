"""Maps on the analysis grid: exact reordering of the same voxels, or interpolation that
does not invent values where the source has none.

Two cases, decided from the affines alone:

- **The same voxel centres** (the map is stored in another orientation, with its axes
  flipped or swapped, or its field of view is shifted, cropped or padded by whole
  voxels): every reference voxel is one voxel of the map, so the values are copied,
  bit for bit, and reference voxels the map does not cover are 0. No interpolation,
  so the mask and every statistic are those of the map on its own grid.
- **Another grid** (another voxel size, a rotation, a shift by part of a voxel): the
  map is interpolated (cubic spline, nilearn's "continuous", as SecondLevelModel does)
  and so is its *support*, the voxels that are finite and non-zero, by nearest
  neighbour. Outside the support the result is exactly 0, so the spline's ringing (the
  1e-15 values it leaves where the map is 0) cannot enter the mask; non-finite source
  voxels are 0 for the spline and NaN in the result wherever one of them is among the
  8 neighbours of the point (the mask leaves NaN voxels out). Variance maps are
  interpolated linearly instead (a weighted mean of non-negative values near the
  support's edge cannot be negative or 0 where the nearest voxel is positive).
"""

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputWarning, bad_input
from .files import save_img
from .images import load_img, read_data

#: Largest difference (mm) between two affines' entries taken as the same grid.
AFFINE_TOLERANCE = 1e-3


def check_smoothing(fwhm, shape, affine, option="--smoothing-fwhm"):
    """Refuse a smoothing kernel wider than the grid's field of view: it would flatten
    every map (and a huge one takes minutes) for nothing a smaller kernel does not do.

    field of view = the largest extent of the grid, max over axes of n_i |A[:3, i]|
    """
    if fwhm is None:
        return
    extent = float(np.max(np.asarray(shape[:3]) * np.linalg.norm(np.asarray(affine)[:3, :3],
                                                                  axis=0)))
    if fwhm > extent:
        raise bad_input(f"{option} {fwhm:g}", f"is wider than the maps' field of view "
                        f"({extent:g} mm): every map would be flattened; choose a kernel "
                        "smaller than the brain")


def same_grid(img, reference):
    """True when ``img`` and ``reference`` have the same shape and affine."""
    return tuple(img.shape[:3]) == tuple(reference.shape[:3]) and np.allclose(
        img.affine, reference.affine, atol=AFFINE_TOLERANCE
    )


def voxel_correspondence(affine, shape, ref_affine):
    """How reference voxels index a map's voxels, when both grids have the same centres.

    Returns None unless every reference voxel index ``r`` maps to the integer map
    index ``axes``/``signs``/``offsets``: map axis ``axes[a]`` has index
    ``signs[a] * r[a] + offsets[a]`` (a signed permutation of the axes plus a whole
    voxel shift); otherwise a tuple ``(axes, signs, offsets)``.
    """
    ref_to_map = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(ref_affine, float)
    linear, shift = ref_to_map[:3, :3], ref_to_map[:3, 3]
    rounded = np.round(linear)
    if not np.allclose(linear, rounded, atol=1e-4) or not np.all(
        np.abs(rounded).sum(axis=0) == 1
    ) or not np.all(np.abs(rounded).sum(axis=1) == 1):
        return None
    voxel_mm = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
    offsets = np.round(shift)
    if np.any(np.abs(shift - offsets) * voxel_mm > AFFINE_TOLERANCE):
        return None
    axes = tuple(int(np.flatnonzero(rounded[:, a])[0]) for a in range(3))
    signs = tuple(int(rounded[axes[a], a]) for a in range(3))
    return axes, signs, tuple(int(offsets[axes[a]]) for a in range(3))


def reorder_to_grid(data, correspondence, ref_shape, fill=0.0):
    """Copy a map's voxels onto the reference grid (see :func:`voxel_correspondence`).

    Exact: every value is one of ``data``'s; reference voxels outside the map's
    field of view get ``fill``.
    """
    axes, signs, offsets = correspondence
    moved = np.transpose(np.asarray(data), axes)  # axis a of moved is map axis axes[a]
    out = np.full(tuple(ref_shape), fill, dtype=moved.dtype)
    take, put = [], []
    for a, size in enumerate(ref_shape):
        index = signs[a] * np.arange(size) + offsets[a]
        inside = (index >= 0) & (index < moved.shape[a])
        take.append(index[inside])
        put.append(np.flatnonzero(inside))
    out[np.ix_(*put)] = moved[np.ix_(*take)]
    return out


def _resample(data, affine, reference, interpolation):
    from nilearn.image import resample_to_img

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = resample_to_img(nib.Nifti1Image(data, affine), reference,
                                interpolation=interpolation, force_resample=True,
                                copy_header=True)
    return np.asanyarray(moved.dataobj)


def interpolate_within_support(data, affine, reference, interpolation="continuous"):
    """Interpolate a map onto ``reference``'s grid, 0 outside its support (module doc).

    ``data`` is the map's 3D array; the support is where it is finite and non-zero.
    Returns a float64 array of the reference's shape.
    """
    data = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(data)
    support = finite & (data != 0)
    values = _resample(np.where(finite, data, 0.0), affine, reference, interpolation)
    inside = _resample(support.astype(np.float32), affine, reference, "nearest") > 0.5
    out = np.where(inside, values, 0.0)
    if not finite.all():
        near_bad = _resample((~finite).astype(np.float32), affine, reference, "linear") > 0
        out[near_bad] = np.nan
    return out


def to_reference_grid(data, affine, reference, variance=False):
    """A map's values (3D ``data`` on ``affine``) on ``reference``'s grid, as float32.

    Same voxel centres: exact copy (:func:`reorder_to_grid`); otherwise
    :func:`interpolate_within_support`, linear for variance maps (then clipped
    at 0). Returns (array, exact).
    """
    correspondence = voxel_correspondence(affine, data.shape, reference.affine)
    if correspondence is not None:
        return reorder_to_grid(data, correspondence, reference.shape[:3]).astype(
            np.float32), True
    values = interpolate_within_support(data, affine, reference,
                                        "linear" if variance else "continuous")
    if variance:
        values = np.maximum(values, 0.0)  # NaN stays NaN
    return values.astype(np.float32), False


class GridWarning(InputWarning):
    """Input maps were resampled to the reference grid."""


def as_3d(img, path, what="input map"):
    """A 3D image (a 4D image with one volume is squeezed); other shapes are an error."""
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] == 1:
        return nib.Nifti1Image(read_data(img, path, what)[..., 0], img.affine, img.header)
    if len(shape) != 3:
        raise bad_input(f"{what} {path}", f"expected a 3D map, got {len(shape)}D shape {shape}")
    return img


def resample_to_reference(paths, reference, out_dir, prefix, what="input map",
                          variance=False):
    """Maps on the reference grid: unchanged paths, or copies in ``out_dir``.

    Maps with the reference's voxel centres in another order are reordered
    exactly; maps on other grids are interpolated within their support
    (:mod:`nipype_secondlevel.io.grids`; ``variance``: linearly, clipped at 0).

    Returns (paths, original paths of the maps that were moved, of those the
    ones that were interpolated).
    """
    out, moved, interpolated = [], [], []
    for i, path in enumerate(paths):
        img = as_3d(load_img(path, what), path, what)
        if same_grid(img, reference):
            out.append(str(path))
            continue
        values, exact = to_reference_grid(read_data(img, path, what), img.affine, reference,
                                          variance=variance)
        name = Path(path).name.replace(".nii.gz", "").replace(".nii", "")
        out.append(save_img(
            nib.Nifti1Image(values, reference.affine),
            Path(out_dir) / f"{prefix}{i:04d}_{name}_space-reference.nii.gz",
        ))
        moved.append(str(path))
        if not exact:
            interpolated.append(str(path))
    return out, moved, interpolated
