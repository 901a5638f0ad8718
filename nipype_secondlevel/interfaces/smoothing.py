"""Smooth: group-level smoothing of the input maps (nilearn's ``smooth_img``)."""

from pathlib import Path

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
from ..io.sidecars import generated_by, write_sidecar


class _SmoothInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="first-level effect maps")
    fwhm = traits.Range(low=0.0, exclude_low=True, mandatory=True,
                        desc="full width at half maximum of the Gaussian kernel, in mm")
    variance_files = InputMultiObject(
        File(exists=True),
        desc="first-level variance maps, one per effect map (mixed or fixed effects); "
        "smoothed with the same kernel",
    )


class _SmoothOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="smoothed effect maps, input order")
    variance_files = traits.List(File(exists=True),
                                 desc="smoothed variance maps, input order (if given)")


class Smooth(SimpleInterface):
    """Smooth every map with a Gaussian kernel of ``fwhm`` mm (nilearn's ``smooth_img``).

    The effect maps are smoothed as nilearn's ``SecondLevelModel(smoothing_fwhm=...)``
    smooths them (the analysis mask is still computed from the unsmoothed maps, as
    nilearn does). Variance maps, if given, are smoothed with the same kernel: for a
    kernel of non-negative weights w summing to at most 1, the variance of the smoothed
    effect, Var(sum w_i e_i) <= (sum w_i s_i)^2 <= sum w_i s_i^2, whatever the spatial
    correlation of the first-level errors, so the smoothed variance is an upper bound
    (equal when the errors are perfectly correlated and the variance uniform) and
    mixed or fixed effects stay conservative. Outputs are named
    ``<index>_<input name>`` in the node's folder, each with a JSON sidecar.
    """

    input_spec = _SmoothInputSpec
    output_spec = _SmoothOutputSpec

    def _smooth(self, paths, what, description, runtime):
        from nilearn.image import smooth_img

        out = []
        for index, path in enumerate(paths):
            smoothed = smooth_img(load_img(path, what), self.inputs.fwhm)
            target = save_img(smoothed, Path(runtime.cwd) / f"{index:04d}_{Path(path).name}")
            write_sidecar(target, {
                "Description": description, "SmoothingFWHM": float(self.inputs.fwhm),
                "Sources": [Path(path).name], "SourceFiles": [str(Path(path).absolute())],
                "GeneratedBy": generated_by("smooth"),
            })
            out.append(target)
        return out

    def _run_interface(self, runtime):
        fwhm = self.inputs.fwhm
        self._results["out_files"] = self._smooth(
            self.inputs.in_files, "input map",
            f"effect map smoothed with a {fwhm:g} mm FWHM Gaussian kernel", runtime)
        self._results["variance_files"] = []
        if isdefined(self.inputs.variance_files):
            if len(self.inputs.variance_files) != len(self.inputs.in_files):
                raise bad_input("variance_files", f"{len(self.inputs.variance_files)} "
                                f"variance maps for {len(self.inputs.in_files)} effect maps")
            self._results["variance_files"] = self._smooth(
                self.inputs.variance_files, "variance map",
                f"first-level variance smoothed with the same {fwhm:g} mm kernel (an upper "
                "bound of the smoothed effect's variance)", runtime)
        return runtime
