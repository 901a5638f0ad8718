"""VarianceFromTMaps: first-level variance maps from contrast and t maps."""

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..design.tables import read_inputs_table
from ..io.errors import bad_input
from ..io.files import save_img, save_tsv
from ..io.images import load_img


def variance_from_t(effect, t):
    """Variance of a contrast from its t map: (effect / t)^2, 0 where that is undefined.

    Where t is 0 (or either value is not finite) the variance cannot be
    recovered; those voxels get 0 (they are outside the brain in SPM maps).
    """
    effect = np.asarray(effect, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (effect / t) ** 2
    return np.where(np.isfinite(variance), variance, 0.0)


class _VarianceFromTMapsInputSpec(BaseInterfaceInputSpec):
    inputs_table = File(exists=True, mandatory=True,
                        desc="inputs table with a tmap_path column (the t map of each path)")


class _VarianceFromTMapsOutputSpec(TraitedSpec):
    inputs_table = File(exists=True, desc="the table with a variance_path column added")
    variance_files = traits.List(File(exists=True), desc="the variance maps, table order")


class VarianceFromTMaps(SimpleInterface):
    """Add ``variance_path`` = (contrast / t)^2 to an inputs table with ``tmap_path``."""

    input_spec = _VarianceFromTMapsInputSpec
    output_spec = _VarianceFromTMapsOutputSpec

    def _run_interface(self, runtime):
        table = read_inputs_table(self.inputs.inputs_table, require_condition=False)
        where = f"inputs table {self.inputs.inputs_table}"
        if "tmap_path" not in table.columns:
            raise bad_input(where, "has no tmap_path column (fetch the t maps)")
        folder = Path(self.inputs.inputs_table).absolute().parent
        table["tmap_path"] = [str(p if Path(p).is_absolute() else folder / p)
                              for p in table["tmap_path"].astype(str)]
        out = Path(runtime.cwd)
        written = []
        for i, row in enumerate(table.to_dict("records")):
            effect = load_img(row["path"], "contrast map")
            tmap = load_img(row["tmap_path"], "t map")
            if effect.shape != tmap.shape or not np.allclose(effect.affine, tmap.affine,
                                                              atol=1e-3):
                raise bad_input(f"t map {row['tmap_path']}",
                                f"is not on the grid of its contrast map {row['path']}")
            variance = variance_from_t(np.asanyarray(effect.dataobj),
                                       np.asanyarray(tmap.dataobj))
            stem = "_".join(str(row[c]) for c in ("subject", "condition") if c in row)
            written.append(save_img(nib.Nifti1Image(variance.astype(np.float32), effect.affine),
                                    out / f"{i:04d}_{stem}_variance.nii.gz"))
        table["variance_path"] = written
        self._results["inputs_table"] = save_tsv(table, out / "inputs.tsv")
        self._results["variance_files"] = written
        return runtime
