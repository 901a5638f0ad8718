"""GroupDesign and ContrastSpecs: any group design from an inputs table, and its contrasts."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..design.contrasts import parse_contrasts
from ..design.matrices import DESIGNS, group_design, labelled_design
from ..design.tables import read_inputs_table
from ..io.files import save_tsv
from ..io.tables import read_design
from ..reporting.figures import plot_design


class _GroupDesignInputSpec(BaseInterfaceInputSpec):
    inputs_table = File(
        exists=True, mandatory=True,
        desc="TSV: subject, path, condition and/or group, optional variance_path, covariates",
    )
    design = traits.Enum(*DESIGNS, usedefault=True, desc="kind of design")
    conditions = traits.List(
        traits.Str, desc="paired: the two conditions (first minus second); "
        "one-sample/two-sample: the one condition whose maps are used",
    )
    groups = traits.List(traits.Str, desc="two-sample: groups in column order")
    covariates = traits.List(traits.Str, desc="table columns added as covariates")
    center_covariates = traits.Bool(True, usedefault=True, desc="mean-centre the covariates")
    design_file = File(exists=True, desc="design 'file': the design TSV, one row per map")
    variances = traits.Bool(
        False, usedefault=True, desc="the table must have variance_path (variance-weighted "
        "estimation)",
    )
    exchangeability_blocks = traits.Str(
        desc="table column of the exchangeability blocks (permutation tests permute rows "
        "only within their block)",
    )


class _GroupDesignOutputSpec(TraitedSpec):
    design_matrix = File(exists=True, desc="design matrix TSV (one row per map, the "
                         "design's columns only): what the estimate reads")
    design_table = File(exists=True, desc="design.tsv: the design matrix with its rows "
                        "labelled (subject, then condition and group when the table has them)")
    design_plot = File(exists=True, desc="picture of the design matrix, rows labelled (PNG)")
    in_files = traits.List(File(exists=True), desc="maps in the design's row order")
    variance_files = traits.List(
        File(exists=True), desc="variance maps in the design's row order (with variances)"
    )
    default_contrasts = traits.List(traits.Str, desc="contrasts tested when none is given")
    blocks = traits.List(
        traits.Str, desc="exchangeability-block label of every design row ([] without "
        "exchangeability_blocks)",
    )


class GroupDesign(SimpleInterface):
    """One-sample, paired, two-sample (with covariates) or user-supplied design.

    Outputs the maps (and variance maps) and the exchangeability-block labels
    in the design's row order, which is the inputs table's (its rows of the
    conditions and groups used). Rank-deficient designs and designs with no
    residual degrees of freedom are refused with a one-line error naming the
    columns involved.
    """

    input_spec = _GroupDesignInputSpec
    output_spec = _GroupDesignOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        design_type = inputs.design
        covariates = list(inputs.covariates) if isdefined(inputs.covariates) else []
        table = read_inputs_table(
            inputs.inputs_table, require_condition=design_type == "paired",
            covariates=covariates, variances=inputs.variances,
        )
        blocks = inputs.exchangeability_blocks
        result = group_design(
            table,
            design=design_type,
            conditions=list(inputs.conditions) if isdefined(inputs.conditions) else None,
            groups=list(inputs.groups) if isdefined(inputs.groups) else None,
            covariates=covariates,
            center=inputs.center_covariates,
            design_file=inputs.design_file if isdefined(inputs.design_file) else None,
            blocks=blocks if isdefined(blocks) else None,
            where=f"inputs table {inputs.inputs_table}",
        )
        out = Path(runtime.cwd)
        self._results["design_matrix"] = save_tsv(result.matrix, out / "design_matrix.tsv")
        self._results["design_table"] = save_tsv(labelled_design(result), out / "design.tsv")
        self._results["design_plot"] = plot_design(
            result.matrix, out / "design.png", title=f"{design_type} design",
            row_labels=[" ".join(r) for r in result.row_labels.itertuples(index=False)],
        )
        self._results["in_files"] = result.paths
        if inputs.variances:
            self._results["variance_files"] = result.variance_paths
        self._results["default_contrasts"] = result.default_contrasts
        self._results["blocks"] = result.blocks
        return runtime


class _ContrastSpecsInputSpec(BaseInterfaceInputSpec):
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    contrasts = traits.List(traits.Str, desc="contrast specifications (default: defaults)")
    default_contrasts = traits.List(traits.Str, desc="used when contrasts is empty")
    two_sided = traits.Bool(True, usedefault=True, desc="threshold t contrasts both signs")


class _ContrastSpecsOutputSpec(TraitedSpec):
    contrasts = traits.List(traits.Str, desc="the contrasts, checked against the design")
    labels = traits.List(traits.Str, desc="their labels (file names)")
    stat_types = traits.List(traits.Str, desc="t or F for each")
    two_sided = traits.List(traits.Bool, desc="threshold both signs (F: never)")


class ContrastSpecs(SimpleInterface):
    """Check every contrast against the design before anything is estimated.

    Kept apart from the design so that changing the contrasts does not touch
    the design file (and so never triggers a new estimate).
    """

    input_spec = _ContrastSpecsInputSpec
    output_spec = _ContrastSpecsOutputSpec

    def _run_interface(self, runtime):
        design, _ = read_design(self.inputs.design_matrix)
        specs = list(self.inputs.contrasts) if isdefined(self.inputs.contrasts) else []
        if not specs and isdefined(self.inputs.default_contrasts):
            specs = list(self.inputs.default_contrasts)
        if not specs:
            specs = [str(design.columns[0])]
        parsed = parse_contrasts(specs, design.columns)
        self._results["contrasts"] = specs
        self._results["labels"] = [label for label, _, _ in parsed]
        self._results["stat_types"] = [kind for _, _, kind in parsed]
        self._results["two_sided"] = [
            bool(self.inputs.two_sided and kind == "t") for _, _, kind in parsed
        ]
        return runtime
