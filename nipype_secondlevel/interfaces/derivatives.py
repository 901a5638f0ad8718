"""The results folder as a BIDS derivatives dataset: its description and the pipeline's graph."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..io.derivatives import write_bidsignore, write_dataset_description
from ..io.files import atomic_path
from ..io.naming import GRAPH_FORMATS, PLAN, plain_name
from ..reporting.figures import draw_graph


class _DatasetDescriptionInputSpec(BaseInterfaceInputSpec):
    command = traits.Str(mandatory=True, desc="how the results were made (the command line "
                         "or the Python call): GeneratedBy's Description")
    name = traits.Str("nipype-secondlevel group analysis", usedefault=True,
                      desc="the dataset's Name")


class _DatasetDescriptionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="dataset_description.json")
    bidsignore = File(exists=True, desc=".bidsignore: our names BIDS does not have yet, so "
                      "that bids-validator checks the rest")


class DatasetDescription(SimpleInterface):
    """Write ``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``
    naming this package, its version and ``command``) and ``.bidsignore``, so that the
    results folder it is exported to is a valid BIDS derivatives dataset."""

    input_spec = _DatasetDescriptionInputSpec
    output_spec = _DatasetDescriptionOutputSpec

    def _run_interface(self, runtime):
        self._results["out_file"] = write_dataset_description(
            runtime.cwd, self.inputs.command, name=self.inputs.name)
        self._results["bidsignore"] = write_bidsignore(runtime.cwd)
        return runtime


class _PipelineGraphInputSpec(BaseInterfaceInputSpec):
    graph_dot = traits.Str(mandatory=True, desc="the pipeline's graph in Graphviz DOT")


class _PipelineGraphOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the graph as DOT, SVG and PNG")


class PipelineGraph(SimpleInterface):
    """Draw the pipeline's graph with Graphviz's ``dot``: ``graph.dot``, ``.svg``, ``.png``."""

    input_spec = _PipelineGraphInputSpec
    output_spec = _PipelineGraphOutputSpec

    def _run_interface(self, runtime):
        source = self.inputs.graph_dot
        written = []
        for fmt in GRAPH_FORMATS:
            target = Path(runtime.cwd) / plain_name("graph", f".{fmt}")
            with atomic_path(target) as tmp:
                tmp.write_bytes(source.encode() if fmt == "dot" else draw_graph(source, fmt))
            written.append(str(target.absolute()))
        self._results["out_files"] = written
        return runtime


class _WritePlanInputSpec(BaseInterfaceInputSpec):
    plan = traits.Str(mandatory=True, desc="the plan as JSON (Plan.to_json)")


class _WritePlanOutputSpec(TraitedSpec):
    plan_file = File(exists=True, desc="plan.json")


class WritePlan(SimpleInterface):
    """Write ``plan.json``: every decision of the analysis (:mod:`..design.plan`), for the
    results folder. Nothing reads the file back: the builders gave each node its piece of
    the plan as values, so this node reruns whenever the plan changes and no other with it."""

    input_spec = _WritePlanInputSpec
    output_spec = _WritePlanOutputSpec

    def _run_interface(self, runtime):
        target = Path(runtime.cwd) / PLAN
        with atomic_path(target) as tmp:
            tmp.write_text(self.inputs.plan)
        self._results["plan_file"] = str(target.absolute())
        return runtime
