"""Estimate: OLS at every voxel of the mask, once."""

from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..errors import bad_input
from ..io import load_mask, load_masked_data, read_table, save_img, unmask
from ..numerics.glm import design_rank, fit_ols


def read_design(path):
    """Design matrix TSV -> (DataFrame, float array), with a clear error if bad."""
    design = read_table(path, "design matrix")
    try:
        X = design.to_numpy(dtype=float)
    except ValueError as err:
        raise bad_input(f"design matrix {path}", "has non-numeric values") from err
    if not np.all(np.isfinite(X)):
        raise bad_input(f"design matrix {path}", "has missing or infinite values")
    return design, X


class _EstimateOLSInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="input maps, one per design row"
    )
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    chunk_size = traits.Int(
        50000, usedefault=True, desc="voxels fitted at a time (bounds memory)"
    )


class _EstimateOLSOutputSpec(TraitedSpec):
    beta = File(exists=True, desc="parameter estimates, one volume per column (4D)")
    residual_variance = File(exists=True, desc="residual variance (RSS / dof)")
    dof = traits.Float(desc="residual degrees of freedom, n - rank(X)")


class EstimateOLS(SimpleInterface):
    """Fit an OLS GLM at every voxel; contrasts are computed later from it."""

    input_spec = _EstimateOLSInputSpec
    output_spec = _EstimateOLSOutputSpec

    def _run_interface(self, runtime):
        _, X = read_design(self.inputs.design_matrix)
        paths = list(self.inputs.in_files)
        where = f"design matrix {self.inputs.design_matrix}"
        if X.shape[0] != len(paths):
            raise bad_input(where, f"has {X.shape[0]} rows but {len(paths)} maps were given")
        rank = design_rank(X)
        if rank < X.shape[1]:
            raise bad_input(where, f"is rank deficient (rank {rank} < {X.shape[1]} columns)")
        if X.shape[0] - rank < 1:
            raise bad_input(where, "leaves no residual degrees of freedom")
        mask, mask_img = load_mask(self.inputs.mask_file)
        Y = load_masked_data(paths, mask, mask_img.affine)
        fit = fit_ols(X, Y, chunk_size=self.inputs.chunk_size)
        del Y
        out = Path(runtime.cwd)
        self._results["beta"] = save_img(
            unmask(fit.beta, mask, mask_img.affine, dtype=np.float64), out / "beta.nii.gz"
        )
        self._results["residual_variance"] = save_img(
            unmask(fit.residual_variance, mask, mask_img.affine, dtype=np.float64),
            out / "residual_variance.nii.gz",
        )
        self._results["dof"] = fit.dof
        return runtime
