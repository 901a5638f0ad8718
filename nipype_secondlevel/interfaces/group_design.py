"""DesignMatrix: the plan's design as files; SelectMaps: a data source's maps in the
plan's row order."""

from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..io.errors import bad_input
from ..io.files import save_tsv
from ..io.naming import DESIGN_PLOT, DESIGN_TABLE
from ..io.tables import absolute_paths, read_table
from ..reporting.figures import plot_design
from ..spec import DESIGNS


class _DesignMatrixInputSpec(BaseInterfaceInputSpec):
    kind = traits.Enum(*DESIGNS, mandatory=True, desc="kind of design (the picture's title)")
    columns = traits.List(traits.Str, mandatory=True, desc="the design's column names")
    matrix = traits.List(traits.List(traits.Float), mandatory=True,
                         desc="one row of values per map, in the plan's row order")
    rows = traits.Dict(traits.Str, traits.List(traits.Str), mandatory=True,
                       desc="row labels: subject (condition, group) -> one label per row")


class _DesignMatrixOutputSpec(TraitedSpec):
    design_matrix = File(exists=True, desc="design matrix TSV (the design's columns only): "
                         "what the estimate reads")
    design_table = File(exists=True, desc="design.tsv: the design matrix with its rows "
                        "labelled (subject, then condition and group when the table has them)")
    design_plot = File(exists=True, desc="picture of the design matrix, rows labelled (PNG)")


class DesignMatrix(SimpleInterface):
    """Write the design a plan decided (:attr:`nipype_secondlevel.design.plan.Plan.design`):
    the matrix the estimate reads, ``design.tsv`` with its rows labelled, and its picture.
    Its inputs are values, so a plan whose design is unchanged leaves this node, and the
    estimate after it, in the cache."""

    input_spec = _DesignMatrixInputSpec
    output_spec = _DesignMatrixOutputSpec
    #: It draws with matplotlib: MultiProc runs it in a worker, where matplotlib is
    #: imported, not in its scheduler's process (``runtime.workers.MultiProcRunner``).
    draws = True

    def _run_interface(self, runtime):
        inputs = self.inputs
        matrix = pd.DataFrame(inputs.matrix, columns=list(inputs.columns), dtype=float)
        labels = pd.DataFrame({k: list(v) for k, v in inputs.rows.items()})
        if len(labels) != len(matrix):
            raise bad_input("rows", f"{len(labels)} row labels for {len(matrix)} design rows")
        out = Path(runtime.cwd)
        self._results["design_matrix"] = save_tsv(matrix, out / "design_matrix.tsv")
        self._results["design_table"] = save_tsv(pd.concat([labels, matrix], axis=1),
                                                 out / DESIGN_TABLE)
        self._results["design_plot"] = plot_design(
            matrix, out / DESIGN_PLOT, title=f"{inputs.kind} design",
            row_labels=[" ".join(r) for r in labels.itertuples(index=False)])
        return runtime


class _SelectMapsInputSpec(BaseInterfaceInputSpec):
    inputs_table = File(exists=True, mandatory=True,
                        desc="a data source's inputs table (subject, condition and/or group, "
                        "path, optional variance_path)")
    rows = traits.Dict(traits.Str, traits.List(traits.Str), mandatory=True,
                       desc="the plan's row labels: column -> one label per row")
    variances = traits.Bool(False, usedefault=True, desc="also give the variance maps")


class _SelectMapsOutputSpec(TraitedSpec):
    in_files = traits.List(File(exists=True), desc="the maps, in the plan's row order")
    variance_files = traits.List(File(exists=True), desc="their variance maps (variances)")


class SelectMaps(SimpleInterface):
    """The maps of a data source (the simulation, the Localizer fetch, a first-level
    workflow) for the plan's rows, matched by their labels (subject, condition, group).
    A row of the plan that the table lacks, or has twice, is a one-line error."""

    input_spec = _SelectMapsInputSpec
    output_spec = _SelectMapsOutputSpec

    def _run_interface(self, runtime):
        path = Path(self.inputs.inputs_table)
        where = f"inputs table {path}"
        wanted = pd.DataFrame({k: list(v) for k, v in self.inputs.rows.items()})
        columns = list(wanted.columns)
        table = read_table(path, "inputs table", text_columns=columns)
        needed = [*columns, "path", *(["variance_path"] if self.inputs.variances else [])]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise bad_input(where, f"missing column(s) {', '.join(missing)}")
        table = table.astype({c: str for c in columns})

        def labels(row):
            return ", ".join(f"{c} {row[c]}" for c in columns)

        twice = table[table.duplicated(columns, keep=False)]
        if len(twice):
            raise bad_input(where, f"has more than one map for {labels(twice.iloc[0])}")
        found = wanted.merge(table, on=columns, how="left")
        if found["path"].isna().any():
            raise bad_input(where, f"has no map for {labels(found[found.path.isna()].iloc[0])}")
        self._results["in_files"] = absolute_paths(found["path"], path.parent)
        if self.inputs.variances:
            self._results["variance_files"] = absolute_paths(found["variance_path"],
                                                             path.parent)
        return runtime
