"""Contrast: t, z, p, effect and variance maps (or F, z, p) from an estimate, no refit."""

from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..design.missing_data import load_coverage_fit
from ..io.errors import bad_input
from ..io.files import save_img
from ..io.images import load_img, load_mask, stat_intent, unmask
from ..io.naming import output_name, plain_name
from ..io.sidecars import generated_by, source_fields, write_sidecar
from ..io.tables import read_design
from ..stats.contrasts import contrast_maps
from ..stats.coverage import coverage_contrast_maps

STATISTIC_DESCRIPTIONS = {
    "z": "z score with the same one-sided p as t",
    "t": "t statistic of the contrast",
    "p": "one-sided p value, P(T > t)",
    "effect": "contrast effect (weights times estimates)",
    "variance": "variance of the contrast effect",
    "dof": "degrees of freedom of t at every voxel (p = P(T_dof > t)): Kenward-Roger's, "
    "or those of the subjects with a value there",
}
#: Descriptions of the maps of an F contrast (several rows).
F_STATISTIC_DESCRIPTIONS = {
    "z": "z score with the same p as F",
    "F": "F statistic of the contrast",
    "p": "p value, P(F > f)",
    "dof": "denominator degrees of freedom of F at every voxel (those of the subjects with "
    "a value there)",
}


class _ContrastInputSpec(BaseInterfaceInputSpec):
    beta = File(exists=True, mandatory=True, desc="parameter estimates (4D)")
    residual_variance = File(exists=True, mandatory=True, xor=["cov_beta"],
                             desc="residual variance map (OLS)")
    cov_beta = File(exists=True, mandatory=True, xor=["residual_variance"],
                    desc="covariance of the estimates, (p, p, n_voxels) .npy "
                    "(EstimateMixedEffects)")
    dof = traits.Float(mandatory=True, desc="residual degrees of freedom")
    kenward_roger = File(
        exists=True, requires=["cov_beta"],
        desc="Kenward-Roger pieces (.npz, EstimateMixedEffects): t contrasts get the "
        "small-sample covariance and per-voxel dof",
    )
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    weights = traits.List(
        traits.List(traits.Float), mandatory=True,
        desc="contrast weights, one per design column, in rows: one row (t) or several (F), "
        "as the plan resolved them (nipype_secondlevel.design.plan)")
    contrast_name = traits.Str(mandatory=True, desc="the contrast's label (its sidecars; "
                               "the sink names its files)")
    coverage_fit = File(
        exists=True, desc="the estimate's per-voxel fit with missing values (.npz): every "
        "voxel on its own subjects and dof (instead of beta, the covariance and dof)")
    preparation = traits.Dict(
        traits.Str, traits.Any,
        desc="how the maps were prepared, added to every sidecar (e.g. SmoothingFWHM, "
        "MaskFile)")


class _ContrastOutputSpec(TraitedSpec):
    z_map = File(exists=True, desc="z map (same one-sided p as t)")
    t_map = File(exists=True, desc="t map")
    p_map = File(exists=True, desc="one-sided p map, P(T > t)")
    effect_map = File(exists=True, desc="contrast effect (c beta)")
    variance_map = File(exists=True, desc="variance of the effect")
    f_map = File(exists=True, desc="F map (F contrasts)")
    dof_map = File(exists=True, desc="per-voxel degrees of freedom of t (Kenward-Roger "
                   "mixed-effects t contrasts)")
    stat_map = File(exists=True, desc="the t or F map")
    stat_type = traits.Enum("t", "F", desc="t (one row) or F (several rows)")
    out_files = traits.List(File(exists=True), desc="every map written, as <stat>.nii.gz")
    contrast_name = traits.Str(desc="label used in the file names")
    weights = traits.List(traits.Float, desc="contrast weights used (t contrasts)")


class Contrast(SimpleInterface):
    """Compute a t or F contrast from an OLS or mixed-effects estimate (no refit)."""

    input_spec = _ContrastInputSpec
    output_spec = _ContrastOutputSpec

    def _run_interface(self, runtime):
        design, X = read_design(self.inputs.design_matrix)
        rows = np.array(self.inputs.weights, dtype=float)
        label = self.inputs.contrast_name
        if rows.ndim != 2 or rows.shape[1] != X.shape[1]:
            raise bad_input(f"contrast {label}", f"weights {self.inputs.weights} are not "
                            f"rows of {X.shape[1]} weights (the design's columns)")
        kind = "t" if len(rows) == 1 else "F"
        mask, mask_img = load_mask(self.inputs.mask_file)
        beta = np.asanyarray(load_img(self.inputs.beta, "beta").dataobj)[mask].T
        dof = self.inputs.dof
        if isdefined(self.inputs.coverage_fit):
            estimate = self.inputs.coverage_fit
            fit = load_coverage_fit(estimate)
            maps, dof = coverage_contrast_maps(fit, rows)
            analysed = np.isfinite(dof)
            if analysed.any() and np.ptp(dof[analysed]) > 0:  # dof vary: a map of their own
                maps["dof"] = dof
            dof = float(np.median(dof[analysed])) if analysed.any() else 0.0
            maps = {stat: np.where(analysed, values, 1.0 if stat == "p" else 0.0)
                    for stat, values in maps.items()}
        elif isdefined(self.inputs.cov_beta):
            estimate = self.inputs.cov_beta
            kenward_roger = None
            if isdefined(self.inputs.kenward_roger):
                with np.load(self.inputs.kenward_roger) as pieces:
                    kenward_roger = dict(pieces)
            maps, dof = contrast_maps(X, beta, rows, dof, cov_beta=np.load(estimate),
                                      kenward_roger=kenward_roger)
        else:
            estimate = self.inputs.residual_variance
            resvar = np.asanyarray(load_img(estimate, "residual variance").dataobj)[mask]
            maps, dof = contrast_maps(X, beta, rows, dof, residual_variance=resvar)
        if np.ndim(dof):  # Kenward-Roger: a map of its own; the sidecars give the median
            maps["dof"] = dof
            dof = float(np.median(dof))
        # F: numerator and denominator degrees of freedom.
        dof_record = float(dof) if kind == "t" else [float(len(rows)), float(dof)]
        descriptions = STATISTIC_DESCRIPTIONS if kind == "t" else F_STATISTIC_DESCRIPTIONS
        weights_record = [{str(c): float(w) for c, w in zip(design.columns, row)}
                          for row in rows]
        out = Path(runtime.cwd)
        sources = [self.inputs.beta, estimate, self.inputs.design_matrix, self.inputs.mask_file]
        written = []
        for stat in maps:
            image = unmask(maps[stat], mask, mask_img, fill=1.0 if stat == "p" else 0.0)
            stat_intent(image, stat, None if "dof" in maps else dof_record)
            written.append(save_img(image, out / plain_name(stat)))
            self._results[f"{stat.lower()}_map"] = written[-1]
            write_sidecar(written[-1], {
                "Contrast": label,
                "ContrastWeights": weights_record[0] if kind == "t" else weights_record,
                "Statistic": stat,
                "Description": descriptions[stat],
                "DegreesOfFreedom": dof_record,
                **({"DegreesOfFreedomMap": output_name("statmap", contrast=label, stat="dof"),
                    "DegreesOfFreedomMethod": "Kenward-Roger (median of the map given)"
                    if not isdefined(self.inputs.coverage_fit) else "the subjects with a "
                    "value at each voxel (median of the map given)"}
                   if "dof" in maps else {}),
                "Threshold": None,
                **(self.inputs.preparation if isdefined(self.inputs.preparation) else {}),
                **source_fields(sources),
                "GeneratedBy": generated_by("contrast"),
            })
        self._results["stat_map"] = written[1]
        self._results["stat_type"] = kind
        self._results["out_files"] = written
        self._results["contrast_name"] = label
        if kind == "t":
            self._results["weights"] = [float(w) for w in rows[0]]
        return runtime
