"""ResampleMaps: bring input maps onto one reference grid, with a warning."""

import warnings

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
from ..io.grids import GridWarning, as_3d, resample_to_reference
from ..io.images import load_img


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
