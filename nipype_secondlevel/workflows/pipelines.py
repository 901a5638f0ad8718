"""Whole runs: a data source, the paired analysis and the export to a folder."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import DerivativesSink, FetchLocalizer, SimulatePaired
from .second_level import init_paired_two_sample_wf

#: outputnode fields of the analysis exported to the output folder.
EXPORTED = [
    "z_map",
    "t_map",
    "p_map",
    "effect_map",
    "variance_map",
    "thresholded_map",
    "cluster_table",
    "glass_brain",
    "design_matrix",
    "design_plot",
    "mask_file",
]


def init_paired_pipeline_wf(source, out_dir, extra_exports=(), name="pipeline_wf", **analysis):
    """Connect a data source node (output ``inputs_table``) to the analysis and a sink.

    Parameters
    ----------
    source : nipype Node
        Node with an ``inputs_table`` output (e.g. FetchLocalizer, SimulatePaired).
    out_dir : str
        Output folder of the sink.
    extra_exports : list of str
        Outputs of ``source`` exported too.
    analysis
        Keyword options of :func:`init_paired_two_sample_wf`.
    """
    workflow = pe.Workflow(name=name)
    analysis_wf = init_paired_two_sample_wf(**analysis)
    exports = list(EXPORTED) + [f"source_{f}" for f in extra_exports]
    merge = pe.Node(niu.Merge(len(exports)), name="collect_outputs")
    sink = pe.Node(DerivativesSink(out_dir=str(out_dir)), name="sink")
    workflow.connect(source, "inputs_table", analysis_wf, "inputnode.inputs_table")
    for i, field in enumerate(exports, start=1):
        if field.startswith("source_"):
            workflow.connect(source, field[len("source_"):], merge, f"in{i}")
        else:
            workflow.connect(analysis_wf, f"outputnode.{field}", merge, f"in{i}")
    workflow.connect(merge, "out", sink, "in_files")
    return workflow


def init_demo_wf(out_dir, n_subjects=16, seed=0, name="demo_wf", **analysis):
    """The reference analysis on the built-in simulated sample (no network).

    Exports the analysis outputs plus the simulation's ground-truth mask.
    """
    source = pe.Node(SimulatePaired(n_subjects=n_subjects, seed=seed), name="simulate")
    return init_paired_pipeline_wf(
        source, out_dir, extra_exports=["truth_mask"], name=name, **analysis
    )


def init_localizer_wf(
    out_dir, n_subjects=16, data_dir=None, get_tmaps=False, name="localizer_wf", **analysis
):
    """The reference analysis on Brainomics/Localizer (vertical vs horizontal)."""
    fetch = pe.Node(
        FetchLocalizer(n_subjects=n_subjects, get_tmaps=get_tmaps), name="fetch"
    )
    if data_dir is not None:
        fetch.inputs.data_dir = str(data_dir)
    return init_paired_pipeline_wf(source=fetch, out_dir=out_dir, name=name, **analysis)
