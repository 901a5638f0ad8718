"""Whole runs: a data source, the paired analysis and the export to a folder."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import DerivativesSink, FetchLocalizer, SimulatePaired
from .reporting import add_report, all_parameters, call_text
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

#: outputnode fields exported too when a permutation correction is asked for.
PERMUTATION_EXPORTS = [
    "permutation_maps",
    "null_distributions",
    "corrected_map",
    "corrected_cluster_table",
]


def init_paired_pipeline_wf(source, out_dir, extra_exports=(), name="pipeline_wf",
                            report=True, command=None, python_call=None, **analysis):
    """Connect a data source node (output ``inputs_table``) to the analysis and a sink.

    Parameters
    ----------
    source : nipype Node
        Node with an ``inputs_table`` output (e.g. FetchLocalizer, SimulatePaired).
    out_dir : str
        Output folder of the sink.
    extra_exports : list of str
        Outputs of ``source`` exported too.
    report : bool
        Add a ``report`` node writing ``report.html`` (exported by the sink).
    command, python_call : str or None
        How the run was started, written in the report.
    analysis
        Keyword options of :func:`init_paired_two_sample_wf`.
    """
    workflow = pe.Workflow(name=name)
    analysis_wf = init_paired_two_sample_wf(**analysis)
    exports = list(EXPORTED) + [f"source_{f}" for f in extra_exports]
    if analysis.get("correction", "none") != "none":
        exports += PERMUTATION_EXPORTS
    # Gathering and copying are quick: on a cluster they run in the submitting
    # process instead of waiting for a job each.
    merge = pe.Node(niu.Merge(len(exports) + bool(report)), name="collect_outputs",
                    run_without_submitting=True)
    sink = pe.Node(DerivativesSink(out_dir=str(out_dir)), name="sink",
                   run_without_submitting=True)
    workflow.connect(source, "inputs_table", analysis_wf, "inputnode.inputs_table")
    for i, field in enumerate(exports, start=1):
        if field.startswith("source_"):
            workflow.connect(source, field[len("source_"):], merge, f"in{i}")
        else:
            workflow.connect(analysis_wf, f"outputnode.{field}", merge, f"in{i}")
    workflow.connect(merge, "out", sink, "in_files")
    if report:
        parameters = all_parameters(init_paired_two_sample_wf, analysis)
        parameters.update({f"{source.name}.{k}": v
                           for k, v in source.inputs.get_traitsfree().items()})
        if python_call is None:
            python_call = call_text("init_paired_pipeline_wf", f"<{source.name} node>",
                                    str(out_dir), extra_exports=list(extra_exports),
                                    name=name, **analysis)
        add_report(workflow, source, analysis_wf, merge, f"in{len(exports) + 1}", parameters,
                   command=command, python_call=python_call, after=[sink.name])
    return workflow


def init_demo_wf(out_dir, n_subjects=16, seed=0, name="demo_wf", **analysis):
    """The reference analysis on the built-in simulated sample (no network).

    Exports the analysis outputs plus the simulation's ground-truth mask.
    """
    source = pe.Node(SimulatePaired(n_subjects=n_subjects, seed=seed), name="simulate")
    analysis.setdefault("python_call", call_text(
        "init_demo_wf", str(out_dir), n_subjects=n_subjects, seed=seed, name=name,
        **{k: v for k, v in analysis.items() if k not in ("command", "report", "python_call")}))
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
    analysis.setdefault("python_call", call_text(
        "init_localizer_wf", str(out_dir), n_subjects=n_subjects,
        data_dir=None if data_dir is None else str(data_dir), get_tmaps=get_tmaps, name=name,
        **{k: v for k, v in analysis.items() if k not in ("command", "report", "python_call")}))
    return init_paired_pipeline_wf(source=fetch, out_dir=out_dir, name=name, **analysis)
