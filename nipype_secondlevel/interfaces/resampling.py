"""ResampleMaps: bring input maps onto one reference grid, with a warning."""

import warnings
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.errors import InputWarning, bad_input
from ..io.files import save_img
from ..io.grids import same_grid, to_reference_grid
from ..io.images import load_img, read_data


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


class _ResampleMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="input maps")
    variance_files = traits.List(File(exists=True), desc="their variance maps (optional)")
    reference = File(exists=True, desc="map defining the grid (default: the first input map)")


class _ResampleMapsOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="maps on the reference grid, same order")
    variance_files = traits.List(File(exists=True), desc="variance maps on the reference grid")
    resampled = traits.List(traits.Str, desc="input files that were resampled")


class ResampleMaps(SimpleInterface):
    """Put every map on the reference grid.

    Maps already on it are passed through as they are (no copy). Maps that are
    not are moved to it with a :class:`GridWarning`: exactly when they have the
    reference's voxel centres (another orientation or field of view), else by
    interpolation that is 0 outside their non-zero voxels (see
    :mod:`nipype_secondlevel.io.grids`). Unreadable files and maps that are not
    3D give a one-line error.
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
        out, resampled, interpolated = resample_to_reference(
            paths, reference, runtime.cwd, "map")
        self._results["out_files"] = out
        if isdefined(self.inputs.variance_files):
            variances = list(self.inputs.variance_files)
            if len(variances) != len(paths):
                raise bad_input("variance maps", f"{len(variances)} given for {len(paths)} maps")
            out_var, resampled_var, interpolated_var = resample_to_reference(
                variances, reference, runtime.cwd, "variance", "variance map", variance=True)
            self._results["variance_files"] = out_var
            resampled += resampled_var
            interpolated += interpolated_var
        self._results["resampled"] = resampled
        if resampled:
            how = (f"{len(resampled) - len(interpolated)} reordered exactly (the same voxels "
                   f"in another orientation or field of view), {len(interpolated)} "
                   "interpolated within their non-zero voxels")
            message = (
                f"{len(resampled)} map(s) are not on the grid of the reference {ref_path} "
                f"{tuple(reference.shape[:3])} and were moved to it ({how}), "
                f"e.g. {(interpolated or resampled)[0]}"
            )
            warnings.warn(message, GridWarning, stacklevel=2)
        return runtime
