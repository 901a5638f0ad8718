"""ResampleMaps: bring input maps onto one reference grid, with a warning."""

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.errors import bad_input
from ..io.files import save_img
from ..io.images import load_img


class GridWarning(UserWarning):
    """Input maps were resampled to the reference grid."""


def as_3d(img, path, what="input map"):
    """A 3D image (a 4D image with one volume is squeezed); other shapes are an error."""
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] == 1:
        return nib.Nifti1Image(np.asanyarray(img.dataobj)[..., 0], img.affine, img.header)
    if len(shape) != 3:
        raise bad_input(f"{what} {path}", f"expected a 3D map, got {len(shape)}D shape {shape}")
    return img


def same_grid(img, reference):
    return tuple(img.shape[:3]) == tuple(reference.shape[:3]) and np.allclose(
        img.affine, reference.affine, atol=1e-3
    )


def resample_to_reference(paths, reference, out_dir, prefix, what="input map",
                          nonnegative=False):
    """Maps on the reference grid: unchanged paths, or resampled copies in ``out_dir``.

    ``nonnegative`` clips the interpolated values at 0 (variance maps: the spline
    interpolation can overshoot below 0 near edges).

    Returns (paths, resampled original paths).
    """
    from nilearn.image import resample_to_img

    out, resampled = [], []
    for i, path in enumerate(paths):
        img = as_3d(load_img(path, what), path, what)
        if same_grid(img, reference):
            out.append(str(path))
            continue
        data = np.asanyarray(img.dataobj)
        img = nib.Nifti1Image(data.astype(np.float64), img.affine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            moved = resample_to_img(img, reference, interpolation="continuous",
                                    force_resample=True, copy_header=True)
        name = Path(path).name.replace(".nii.gz", "").replace(".nii", "")
        values = np.asanyarray(moved.dataobj).astype(np.float32)
        if nonnegative:
            values = np.maximum(values, 0)
        out.append(save_img(
            nib.Nifti1Image(values, reference.affine),
            Path(out_dir) / f"{prefix}{i:04d}_{name}_space-reference.nii.gz",
        ))
        resampled.append(str(path))
    return out, resampled


class _ResampleMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="input maps")
    variance_files = traits.List(File(exists=True), desc="their variance maps (optional)")
    reference = File(exists=True, desc="map defining the grid (default: the first input map)")


class _ResampleMapsOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="maps on the reference grid, same order")
    variance_files = traits.List(File(exists=True), desc="variance maps on the reference grid")
    resampled = traits.List(traits.Str, desc="input files that were resampled")


class ResampleMaps(SimpleInterface):
    """Put every map on the reference grid (continuous interpolation).

    Maps already on it are passed through as they are (no copy). Maps that are
    not are resampled with a :class:`GridWarning`. Unreadable files and maps
    that are not 3D give a one-line error.
    """

    input_spec = _ResampleMapsInputSpec
    output_spec = _ResampleMapsOutputSpec

    def _run_interface(self, runtime):
        paths = list(self.inputs.in_files)
        if isdefined(self.inputs.reference):
            ref_path = self.inputs.reference
            reference = as_3d(load_img(ref_path, "reference map"), ref_path, "reference map")
        else:
            ref_path = paths[0]
            reference = as_3d(load_img(ref_path, "input map"), ref_path)
        out, resampled = resample_to_reference(paths, reference, runtime.cwd, "map")
        self._results["out_files"] = out
        if isdefined(self.inputs.variance_files):
            variances = list(self.inputs.variance_files)
            if len(variances) != len(paths):
                raise bad_input("variance maps", f"{len(variances)} given for {len(paths)} maps")
            out_var, resampled_var = resample_to_reference(
                variances, reference, runtime.cwd, "variance", "variance map",
                nonnegative=True)
            self._results["variance_files"] = out_var
            resampled += resampled_var
        self._results["resampled"] = resampled
        if resampled:
            message = (
                f"{len(resampled)} map(s) are not on the grid of the reference {ref_path} "
                f"{tuple(reference.shape[:3])} and were resampled to it, e.g. {resampled[0]}"
            )
            warnings.warn(message, GridWarning, stacklevel=2)
        return runtime
