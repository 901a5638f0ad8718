"""Contrast: t, z, p, effect and variance maps from an estimate, no refit."""

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

from ..design import contrast_label, contrast_weights
from ..io import load_img, load_mask, save_img, unmask
from ..numerics.glm import t_contrast, t_to_p, t_to_z
from .estimation import read_design

STATISTICS = ("z", "t", "p", "effect", "variance")


def statmap_name(label, stat):
    """BIDS-derivatives-style file name of a statistical map."""
    return f"contrast-{label}_stat-{stat}_statmap.nii.gz"


class _ContrastInputSpec(BaseInterfaceInputSpec):
    beta = File(exists=True, mandatory=True, desc="parameter estimates (4D)")
    residual_variance = File(exists=True, mandatory=True, desc="residual variance map")
    dof = traits.Float(mandatory=True, desc="residual degrees of freedom")
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    contrast = traits.Str(
        xor=["weights"],
        desc='a column name or an expression of columns, e.g. "vertical - horizontal"',
    )
    weights = traits.List(
        traits.Float, xor=["contrast"], desc="contrast weights, one per column"
    )
    contrast_name = traits.Str(desc="label used in file names (default: from contrast)")


class _ContrastOutputSpec(TraitedSpec):
    z_map = File(exists=True, desc="z map (same one-sided p as t)")
    t_map = File(exists=True, desc="t map")
    p_map = File(exists=True, desc="one-sided p map, P(T > t)")
    effect_map = File(exists=True, desc="contrast effect (c beta)")
    variance_map = File(exists=True, desc="variance of the effect")
    contrast_name = traits.Str(desc="label used in the file names")
    weights = traits.List(traits.Float, desc="contrast weights used")


class Contrast(SimpleInterface):
    """Compute a t contrast from an OLS estimate (no refit)."""

    input_spec = _ContrastInputSpec
    output_spec = _ContrastOutputSpec

    def _run_interface(self, runtime):
        design, X = read_design(self.inputs.design_matrix)
        if isdefined(self.inputs.contrast):
            spec = self.inputs.contrast
        elif isdefined(self.inputs.weights):
            spec = list(self.inputs.weights)
        else:
            spec = str(design.columns[0])
        weights = contrast_weights(spec, design.columns)
        if isdefined(self.inputs.contrast_name):
            label = contrast_label(self.inputs.contrast_name)
        elif isinstance(spec, str):
            label = contrast_label(spec)
        else:
            label = "c" + "".join(f"{w:g}" for w in weights).replace("-", "m").replace(".", "p")
        mask, mask_img = load_mask(self.inputs.mask_file)
        beta = np.asanyarray(load_img(self.inputs.beta, "beta").dataobj)[mask].T
        resvar = np.asanyarray(
            load_img(self.inputs.residual_variance, "residual variance").dataobj
        )[mask]
        dof = self.inputs.dof
        effect, variance, t = t_contrast(X, beta, resvar, weights)
        maps = {
            "z": t_to_z(t, dof),
            "t": t,
            "p": t_to_p(t, dof),
            "effect": effect,
            "variance": variance,
        }
        out = Path(runtime.cwd)
        for stat in STATISTICS:
            self._results[f"{stat}_map"] = save_img(
                unmask(maps[stat], mask, mask_img.affine, fill=1.0 if stat == "p" else 0.0),
                out / statmap_name(label, stat),
            )
        self._results["contrast_name"] = label
        self._results["weights"] = [float(w) for w in weights]
        return runtime
