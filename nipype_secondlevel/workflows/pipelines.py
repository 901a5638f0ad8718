"""Whole runs: a data source (a table, the simulation, the Localizer), the one group
analysis, the HTML report and the export to a folder."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (
    DatasetDescription,
    DerivativesSink,
    FetchLocalizer,
    PipelineGraph,
    SimulatePaired,
)
from .group_analysis import init_group_analysis_wf, resolved_alpha
from .inference import PERMUTATION_CORRECTIONS
from .reporting import add_report, all_parameters, call_text, workflow_dot

#: outputnode fields of the analysis exported to the output folder (lists are
#: flattened; undefined fields, e.g. the between-subject variance of OLS, are skipped).
EXPORTED = [
    "design_table",
    "design_plot",
    "mask_file",
    "contrast_files",
    "thresholded_maps",
    "cluster_tables",
    "glass_brains",
    "between_subject_variance",
]

#: outputnode fields exported too with a permutation correction.
PERMUTATION_EXPORTS = [
    "logp_maps",
    "corrected_logp",
    "null_distributions",
    "corrected_maps",
    "corrected_cluster_tables",
]

#: The reference analysis: paired, vertical minus horizontal checkerboard.
REFERENCE_DESIGN = {"design": "paired", "conditions": ["vertical", "horizontal"]}


def init_group_pipeline_wf(out_dir, *, inputs_table=None, source=None, extra_exports=(),
                           export_files=(), input_files=(), report=True, graph=False,
                           command=None, python_call=None, name="group_wf", **analysis):
    """The group analysis of an inputs table (or a data source), exported to ``out_dir``.

    Parameters
    ----------
    out_dir : str
        Output folder of the sink: a BIDS derivatives dataset (its
        ``dataset_description.json`` is written by the ``dataset_description`` node).
    inputs_table : path or None
        The user's inputs table (when there is no ``source``).
    source : nipype Node or None
        Node with an ``inputs_table`` output (e.g. SimulatePaired, FetchLocalizer),
        instead.
    extra_exports : list of str
        Outputs of ``source`` exported too (e.g. the simulation's truth mask).
    export_files : list of paths
        Files exported as they are (e.g. the inputs table built from a BIDS dataset).
    input_files : list of paths
        The maps and other inputs, which the export never removes nor replaces (the
        inputs table, design file, mask and reference map are added here).
    report : bool
        Add a ``report`` node writing ``report.html`` (exported by the sink).
    graph : bool
        Add a ``graph`` node drawing the pipeline's graph
        (``desc-pipeline_graph.{dot,svg,png}``, exported; needs Graphviz's ``dot``).
    command, python_call : str or None
        How the run was started, written in the report and in
        ``dataset_description.json`` (the command, else the Python call).
    name : str
        Workflow name.
    analysis
        Keyword options of :func:`init_group_analysis_wf`.

    Nodes: the source (if any), ``group_analysis_wf``, ``dataset_description``,
    ``graph`` (with ``graph``), ``report``, ``collect_outputs`` (a Merge of every exported file) and
    ``sink``.
    """
    workflow = pe.Workflow(name=name)
    analysis_wf = init_group_analysis_wf(**analysis)
    exports = list(EXPORTED)
    if analysis.get("correction", "none") in PERMUTATION_CORRECTIONS:
        exports += PERMUTATION_EXPORTS
    exports += [f"source_{f}" for f in extra_exports]
    if python_call is None:
        python_call = call_text("init_group_pipeline_wf", str(out_dir),
                                inputs_table=inputs_table, name=name, **analysis)
    # Gathering and copying are quick: on a cluster they run in the submitting
    # process instead of waiting for a job each.
    description = pe.Node(DatasetDescription(command=command or python_call),
                          name="dataset_description", run_without_submitting=True)
    merge = pe.Node(niu.Merge(len(exports) + 3 + bool(report), ravel_inputs=True),
                    name="collect_outputs", run_without_submitting=True)
    given = [inputs_table, *(analysis.get(k) for k in ("design_file", "mask_file",
                                                         "reference_map"))]
    sink = pe.Node(DerivativesSink(out_dir=str(out_dir), input_files=[
        str(f) for f in (*given, *input_files) if f is not None]), name="sink",
        run_without_submitting=True)
    if source is not None:
        workflow.connect(source, "inputs_table", analysis_wf, "inputnode.inputs_table")
    else:
        analysis_wf.inputs.inputnode.inputs_table = str(inputs_table)
    for i, field in enumerate(exports, start=1):
        if field.startswith("source_"):
            workflow.connect(source, field[len("source_"):], merge, f"in{i}")
        else:
            workflow.connect(analysis_wf, f"outputnode.{field}", merge, f"in{i}")
    setattr(merge.inputs, f"in{len(exports) + 2}", [str(f) for f in export_files])
    workflow.connect([
        (description, merge, [("out_file", f"in{len(exports) + 1}")]),
        (merge, sink, [("out", "in_files")]),
    ])
    if graph:
        drawing = pe.Node(PipelineGraph(), name="graph", run_without_submitting=True)
        workflow.connect(drawing, "out_files", merge, f"in{len(exports) + 3}")
    else:
        setattr(merge.inputs, f"in{len(exports) + 3}", [])
    if report:
        parameters = all_parameters(init_group_analysis_wf, analysis)
        parameters["alpha"] = resolved_alpha(parameters["alpha"], parameters["correction"])
        if source is not None:
            parameters.update({f"{source.name}.{k}": v
                               for k, v in source.inputs.get_traitsfree().items()})
        report_node = add_report(workflow, source, analysis_wf, merge, f"in{len(exports) + 4}", parameters,
                   command=command, python_call=python_call, after=[sink.name],
                   inputs_table=inputs_table)
    if graph:
        # The graph drawn once every node, this one included, is in the workflow.
        drawing.inputs.graph_dot = (report_node.inputs.graph_dot if report
                                    else workflow_dot(workflow))
    return workflow


def _call(function, out_dir, options, analysis):
    """The Python call of a pipeline, for its report."""
    given = {k: v for k, v in analysis.items() if k not in ("command", "report", "python_call")}
    return call_text(function, str(out_dir), **options, **given)


def init_demo_wf(out_dir, n_subjects=16, seed=0, name="demo_wf", **analysis):
    """The reference analysis on the built-in simulated sample (no network).

    The simulation (node ``simulate``, :class:`SimulatePaired`) feeds the
    group analysis with the paired design (vertical minus horizontal); the
    simulation's ground-truth mask is exported too. ``analysis``: options of
    :func:`init_group_pipeline_wf` and :func:`init_group_analysis_wf`.
    """
    source = pe.Node(SimulatePaired(n_subjects=n_subjects, seed=seed), name="simulate")
    analysis.setdefault("python_call", _call(
        "init_demo_wf", out_dir, {"n_subjects": n_subjects, "seed": seed, "name": name},
        analysis))
    return init_group_pipeline_wf(out_dir, source=source, extra_exports=["truth_mask"],
                                  name=name, **{**REFERENCE_DESIGN, **analysis})


def init_localizer_wf(out_dir, n_subjects=16, data_dir=None, name="localizer_wf",
                      **analysis):
    """The reference analysis on Brainomics/Localizer (vertical vs horizontal checkerboard).

    The fetch (node ``fetch``, :class:`FetchLocalizer`) feeds the group analysis
    with the paired design. With ``estimation="mixed"`` or ``"fixed"`` the same
    node also fetches the t maps and writes each map's first-level variance,
    (contrast / t)^2, so the graph differs from the OLS one only in the
    estimator (``estimate`` and ``masked_variances``).
    """
    fetch = pe.Node(FetchLocalizer(n_subjects=n_subjects,
                                   variances=analysis.get("estimation", "ols") != "ols"),
                    name="fetch")
    if data_dir is not None:
        fetch.inputs.data_dir = str(data_dir)
    analysis.setdefault("python_call", _call(
        "init_localizer_wf", out_dir,
        {"n_subjects": n_subjects, "data_dir": None if data_dir is None else str(data_dir),
         "name": name}, analysis))
    return init_group_pipeline_wf(out_dir, source=fetch, name=name,
                                  **{**REFERENCE_DESIGN, **analysis})
