"""Design: the design matrix of a paired test, as TSV and PNG."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..design.matrices import paired_design
from ..design.tables import read_inputs_table
from ..io.files import save_tsv
from ..reporting.figures import plot_design


class _PairedDesignInputSpec(BaseInterfaceInputSpec):
    inputs_table = File(
        exists=True, mandatory=True, desc="TSV with subject, condition, path"
    )
    conditions = traits.List(
        traits.Str, mandatory=True, minlen=2, maxlen=2,
        desc="the two conditions compared: first minus second",
    )


class _PairedDesignOutputSpec(TraitedSpec):
    design_matrix = File(exists=True, desc="design matrix TSV (one row per map)")
    design_plot = File(exists=True, desc="picture of the design matrix (PNG)")
    in_files = traits.List(File(exists=True), desc="maps in the design's row order")
    condition_column = traits.Str(desc="name of the condition column")


class PairedDesign(SimpleInterface):
    """Paired design: a 1/0 condition column plus one column per subject.

    With 1/0 coding the condition estimate is the mean paired difference.
    Unequal numbers of maps per condition give a clear error.
    """

    input_spec = _PairedDesignInputSpec
    output_spec = _PairedDesignOutputSpec

    def _run_interface(self, runtime):
        table = read_inputs_table(self.inputs.inputs_table)
        design, paths = paired_design(
            table, self.inputs.conditions, where=f"inputs table {self.inputs.inputs_table}"
        )
        out = Path(runtime.cwd)
        self._results["design_matrix"] = save_tsv(design, out / "design.tsv")
        self._results["design_plot"] = plot_design(
            design, out / "design.png", title="paired design"
        )
        self._results["in_files"] = paths
        self._results["condition_column"] = str(design.columns[0])
        return runtime
