"""EstimateMixedEffects: variance-weighted estimation with first-level variance maps."""

from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
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
from ..io.images import load_mask, unmask
from ..io.masked_data import (
    iter_voxel_chunks,
    masked_data_shape,
    voxel_chunk_size,
)
from ..io.naming import BETA_NAME
from ..io.progress import Progress
from ..io.sidecars import generated_by, source_fields, write_sidecar
from ..io.tables import read_design
from ..spec import DEFAULTS, ESTIMATIONS
from ..stats.mixed_effects import DOF_MAX, fit_mixed_effects_chunks


class _EstimateMixedEffectsInputSpec(BaseInterfaceInputSpec):
    data_file = File(
        exists=True, mandatory=True,
        desc="masked first-level effect maps (MaskedData's data_file), one row per design "
        "row; read in voxel chunks, so memory follows mem_gb",
    )
    variance_data_file = File(
        exists=True, mandatory=True,
        desc="masked first-level variance maps (MaskedData's data_file), same rows",
    )
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    coverage = traits.Dict(
        usedefault=True, desc="missing values (NaN, or 0 with a variance of 0 or NaN): min_subjects, "
        "subjects, contrasts, zeros_without_variance, variance_files (see "
        "nipype_secondlevel.design.missing_data); with one missing, every voxel is fitted "
        "with the subjects present there")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    method = traits.Enum(
        *ESTIMATIONS[1:], usedefault=True,
        desc="mixed: between-subject variance by REML (FLAME1-like), t on n - rank(X) dof; "
        "fixed: no between-subject variance (as nilearn's compute_fixed_effects)",
    )
    first_level_dof = traits.Float(
        DEFAULTS["first_level_dof"], usedefault=True,
        desc="fixed: dof of each first-level map; t has their sum (nilearn's default 100)",
    )
    mem_gb = traits.Float(
        DEFAULTS["mem_gb"], usedefault=True, nohash=True,
        desc="memory budget (GiB) setting the voxels read at a time; the results do not "
        "depend on it (bit for bit), so changing it does not rerun the node",
    )


class _EstimateMixedEffectsOutputSpec(TraitedSpec):
    beta = File(exists=True, desc="parameter estimates, one volume per column (4D)")
    cov_beta = File(
        exists=True, desc="covariance of the estimates at every mask voxel, (p, p, n_voxels) .npy"
    )
    kenward_roger = File(
        desc="mixed: Kenward-Roger pieces (.npz: cov_beta_adjusted, cov_beta_derivative, "
        "sigma2_variance) for t contrasts with small-sample dof"
    )
    between_subject_variance = File(exists=True, desc="REML between-subject variance map")
    dof = traits.Float(desc="degrees of freedom of the contrasts")
    n_not_converged = traits.Int(desc="mask voxels where REML did not converge")
    coverage_fit = File(desc="with missing values: the per-voxel fit (.npz) the contrasts "
                        "are computed from")
    coverage_map = File(exists=True, desc="subjects with a value at every voxel")


class EstimateMixedEffects(SimpleInterface):
    """Fit a mixed-effects (or fixed-effects) GLM with first-level variances.

    At every voxel Y_i = X_i beta + e_i, Var(e_i) = V_i + s. ``mixed``
    estimates s >= 0 by REML and beta by GLS (FLAME1-like), and also writes
    the Kenward-Roger pieces with which :class:`Contrast` gives t contrasts a
    small-sample covariance and per-voxel dof (FLAME1's n - rank(X) dof are
    liberal when s is about the size of V: see
    validation/mixed_effects_null_simulation.py); with all V zero this is OLS. ``fixed`` sets s = 0
    (weighted least squares); for a one-sample design it equals nilearn's
    ``compute_fixed_effects(precision_weighted=True)``, with the same dof
    (first_level_dof per map). Contrasts are computed later by
    :class:`Contrast` from ``beta`` and ``cov_beta``. The masked maps are read
    in voxel chunks sized by ``mem_gb``: memory holds one chunk and the
    results (whose size does not depend on the number of maps).
    """

    input_spec = _EstimateMixedEffectsInputSpec
    output_spec = _EstimateMixedEffectsOutputSpec

    def _run_interface(self, runtime):
        design, X = read_design(self.inputs.design_matrix)
        where = f"design matrix {self.inputs.design_matrix}"
        shape = masked_data_shape(self.inputs.data_file)
        variance_shape = masked_data_shape(self.inputs.variance_data_file)
        if X.shape[0] != shape[0] or variance_shape != shape:
            raise bad_input(where, f"has {X.shape[0]} rows but the data file has {shape} "
                            f"(maps, voxels) and the variance data file {variance_shape}")
        check_estimable(design, where)
        mask, mask_img = load_mask(self.inputs.mask_file)
        fixed = self.inputs.method == "fixed"
        # A chunk holds the effects and variances as float64 (and the float32 read):
        # 24 bytes per value; the fit's temporaries are one block's, some 30 MiB.
        chunk = voxel_chunk_size(shape[0], self.inputs.mem_gb, shape[1])
        out = Path(runtime.cwd)
        sources = [self.inputs.data_file, self.inputs.variance_data_file,
                   self.inputs.design_matrix, self.inputs.mask_file]
        Y, V = read_missing(self.inputs.data_file, self.inputs.variance_data_file, chunk, mask,
                            self.inputs.coverage, weighted=True)
        if Y is not None:
            self._fit_missing(out, X, Y, V, mask, mask_img, sources)
            return runtime
        self._results["coverage_map"] = save_count_map(
            out / "coverage.nii.gz", n_subjects(self.inputs.coverage, shape[0]), mask,
            mask_img, self.inputs.coverage, sources)
        fit = fit_mixed_effects_chunks(X, self._chunks(chunk), shape[1],
                                       sigma2_between=0.0 if fixed else None,
                                       progress=Progress("estimate"))
        dof = min(shape[0] * self.inputs.first_level_dof, DOF_MAX) if fixed else fit.dof
        self._results["beta"] = save_img(
            unmask(fit.beta, mask, mask_img, dtype=np.float64), out / BETA_NAME
        )
        self._results["cov_beta"] = save_arrays(out / "cov_beta.npy", fit.cov_beta)
        if not fixed:
            self._results["kenward_roger"] = save_arrays(
                out / "kenward_roger.npz", cov_beta_adjusted=fit.cov_beta_adjusted,
                cov_beta_derivative=fit.cov_beta_derivative,
                sigma2_variance=fit.sigma2_variance,
            )
        self._results["dof"] = float(dof)
        self._write_between(fit.sigma2_between, int((~fit.converged).sum()), out, mask,
                            mask_img)
        return runtime

    def _fit_missing(self, out, X, Y, V, mask, affine, sources):
        """Every voxel fitted with the maps present there (values missing somewhere)."""
        results, fit = fit_missing_values(X, Y, V, self.inputs.method, self.inputs.coverage,
                                          self.inputs.first_level_dof, out, mask, affine,
                                          sources, Progress("estimate"))
        self._results.update(results)
        # The contrasts read the fit; cov_beta is its covariance, for other readers.
        self._results["cov_beta"] = save_arrays(out / "cov_beta.npy", fit.cov_beta)
        self._write_between(np.nan_to_num(fit.sigma2_between),
                            int((fit.analysed & ~fit.converged).sum()), out, mask, affine)

    def _write_between(self, sigma2_between, n_not_converged, out, mask, affine):
        """The between-subject variance map and its sidecar."""
        fixed = self.inputs.method == "fixed"
        between = self._results["between_subject_variance"] = save_img(
            unmask(sigma2_between, mask, affine, dtype=np.float64),
            out / "between_subject_variance.nii.gz",
        )
        self._results["n_not_converged"] = n_not_converged
        write_sidecar(between, {
            "Description": "between-subject variance of the mixed-effects model, by REML"
            if not fixed else "between-subject variance: 0 (fixed effects)",
            "Estimation": self.inputs.method,
            "VoxelsNotConverged": self._results["n_not_converged"],
            **source_fields([self.inputs.data_file, self.inputs.variance_data_file,
                             self.inputs.design_matrix, self.inputs.mask_file]),
            "GeneratedBy": generated_by("estimate"),
        })

    def _chunks(self, chunk):
        """(slice, effects, variances) chunk by chunk, holding no chunk between two."""
        pairs = zip(iter_voxel_chunks(self.inputs.data_file, chunk),
                    iter_voxel_chunks(self.inputs.variance_data_file, chunk))
        for (where, Y), (_, V) in pairs:
            yield where, Y, V
