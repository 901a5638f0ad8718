"""Estimate: OLS at every voxel of the mask, once."""

from pathlib import Path

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

from ..design.matrices import check_estimable
from ..design.missing_data import (
    fit_missing_values,
    n_subjects,
    read_missing,
    save_count_map,
)
from ..io.errors import bad_input
from ..io.files import save_arrays, save_img
from ..io.images import load_mask, load_masked_data, unmask
from ..io.masked_data import iter_voxel_chunks, masked_data_shape, voxel_chunk_size
from ..io.naming import BETA_NAME
from ..io.progress import Progress
from ..io.tables import read_design
from ..spec import DEFAULTS, VOXEL_BLOCK
from ..stats.glm import design_rank, fit_ols


class _EstimateOLSInputSpec(BaseInterfaceInputSpec):
    data_file = File(
        exists=True, mandatory=True, xor=["in_files"],
        desc="masked data (MaskedData's data_file), one row per design row; "
        "read in voxel chunks, so memory follows mem_gb",
    )
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, xor=["data_file"],
        desc="input maps, one per design row (all are held in memory; "
        "prefer data_file for large samples)",
    )
    variance_data_file = File(
        exists=True, desc="masked first-level variance maps, same rows (MaskedData's "
        "data_file), if the maps have some: they say where a map's value is missing")
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    coverage = traits.Dict(
        usedefault=True, desc="missing values (NaN, or 0 with a variance of 0 or NaN): min_subjects, "
        "subjects, contrasts, zeros_without_variance, variance_files (see "
        "nipype_secondlevel.design.missing_data); with one missing, every voxel is fitted "
        "with the subjects present there")
    mem_gb = traits.Float(
        DEFAULTS["mem_gb"], usedefault=True, nohash=True,
        desc="memory budget (GiB) setting the voxels fitted at a time; the results "
        "do not depend on it, so changing it does not rerun the node",
    )
    chunk_size = traits.Int(
        nohash=True,
        desc="voxels fitted at a time, instead of following mem_gb (rounded up to "
        "whole blocks of io.VOXEL_BLOCK voxels)",
    )


class _EstimateOLSOutputSpec(TraitedSpec):
    beta = File(exists=True, desc="parameter estimates, one volume per column (4D)")
    residual_variance = File(exists=True, desc="residual variance (RSS / dof)")
    dof = traits.Float(desc="residual degrees of freedom, n - rank(X) (missing values: "
                       "the median over the voxels analysed)")
    coverage_fit = File(desc="with missing values: the per-voxel fit (.npz) the contrasts "
                        "are computed from")
    coverage_map = File(exists=True, desc="subjects with a value at every voxel")
    coverage_data = File(desc="with missing values: the masked data, NaN where a value is "
                         "missing (.npy, for the permutation tests)")


class EstimateOLS(SimpleInterface):
    """Fit an OLS GLM at every voxel; contrasts are computed later from it."""

    input_spec = _EstimateOLSInputSpec
    output_spec = _EstimateOLSOutputSpec

    def _run_interface(self, runtime):
        design, X = read_design(self.inputs.design_matrix)
        if isdefined(self.inputs.data_file):
            n_maps, n_voxels = masked_data_shape(self.inputs.data_file)
            given = f"the data file {self.inputs.data_file} has {n_maps} rows"
        else:
            paths = list(self.inputs.in_files)
            n_maps = len(paths)
            given = f"{n_maps} maps were given"
        where = f"design matrix {self.inputs.design_matrix}"
        if X.shape[0] != n_maps:
            raise bad_input(where, f"has {X.shape[0]} rows but {given}")
        check_estimable(design, where)  # the plan's check, for a design given here
        rank = design_rank(X)
        mask, mask_img = load_mask(self.inputs.mask_file)
        if isdefined(self.inputs.data_file):
            if n_voxels != int(mask.sum()):
                raise bad_input(
                    f"data file {self.inputs.data_file}",
                    f"has {n_voxels} voxels but the mask has {int(mask.sum())}",
                )
        else:
            Y = load_masked_data(paths, mask, mask_img.affine)
        n_voxels = int(mask.sum())
        out = Path(runtime.cwd)
        if isdefined(self.inputs.data_file):
            variance_file = (self.inputs.variance_data_file
                             if isdefined(self.inputs.variance_data_file) else None)
            Y, _ = read_missing(self.inputs.data_file, variance_file,
                                voxel_chunk_size(n_maps, self.inputs.mem_gb, n_voxels), mask,
                                self.inputs.coverage, weighted=False)
            if Y is not None:
                self._fit_missing(out, X, Y, mask, mask_img)
                return runtime
        self._results["coverage_map"] = save_count_map(
            out / "coverage.nii.gz", n_subjects(self.inputs.coverage, n_maps), mask,
            mask_img, self.inputs.coverage,
            [self.inputs.design_matrix, self.inputs.mask_file])
        if isdefined(self.inputs.chunk_size):
            blocks = -(-max(self.inputs.chunk_size, 1) // VOXEL_BLOCK)
            chunk = blocks * VOXEL_BLOCK
        else:
            chunk = voxel_chunk_size(n_maps, self.inputs.mem_gb, n_voxels)
        beta = np.empty((X.shape[1], n_voxels))
        residual_variance = np.empty(n_voxels)
        dof = float(X.shape[0] - rank)
        if isdefined(self.inputs.data_file):
            chunks = iter_voxel_chunks(self.inputs.data_file, chunk)
        else:
            chunks = (
                (slice(s, s + chunk), Y[:, s:s + chunk]) for s in range(0, n_voxels, chunk)
            )
        for cols, y in Progress("estimate").track(chunks, -(-n_voxels // chunk),
                                                  "voxel chunks"):
            # Blocks of VOXEL_BLOCK voxels aligned on the voxel index: the same
            # arithmetic whatever the chunk, so the results do not depend on mem_gb.
            fit = fit_ols(X, y, chunk_size=VOXEL_BLOCK)
            beta[:, cols] = fit.beta
            residual_variance[cols] = fit.residual_variance
            del y, fit
        self._results["beta"] = save_img(
            unmask(beta, mask, mask_img, dtype=np.float64), out / BETA_NAME
        )
        self._results["residual_variance"] = save_img(
            unmask(residual_variance, mask, mask_img, dtype=np.float64),
            out / "residual_variance.nii.gz",
        )
        self._results["dof"] = dof
        return runtime

    def _fit_missing(self, out, X, Y, mask, affine):
        """Every voxel fitted with the maps present there (values missing somewhere)."""
        inputs = self.inputs
        results, fit = fit_missing_values(
            X, Y, None, "ols", inputs.coverage, None, out, mask, affine,
            [inputs.data_file, inputs.design_matrix, inputs.mask_file])
        self._results.update(results)
        self._results["coverage_data"] = save_arrays(out / "coverage_data.npy", Y)
        self._results["residual_variance"] = save_img(
            unmask(np.nan_to_num(fit.residual_variance), mask, affine, dtype=np.float64),
            out / "residual_variance.nii.gz")
