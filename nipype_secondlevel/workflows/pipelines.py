"""Whole runs: a data source (a table, the simulation, the Localizer), the one group
analysis, the HTML report and the export to a folder, every file named at the sink."""

import re
from pathlib import Path

from nipype.pipeline import engine as pe

from ..datasets.localizer import localizer_rows
from ..datasets.simulation import (
    LOCALIZER_AFFINE,
    LOCALIZER_SHAPE,
    check_simulation_fits,
    simulation_rows,
)
from ..design.plan import make_plan, planner_call
from ..interfaces import (
    DatasetDescription,
    DerivativesSink,
    FetchLocalizer,
    PipelineGraph,
    SimulatePaired,
)
from ..io import naming
from ..io.domains import map_files
from ..io.errors import bad_input
from ..spec import DEFAULTS, resolve
from .group_analysis import init_group_analysis_wf
from .reporting import add_report, workflow_dot
from .surfaces import plan_domain_value

#: Name of the copy of a BIDS Stats Model file in each of its analyses' results folders.
MODEL_COPY = "model_smdl.json"
#: The reference analysis: paired, vertical minus horizontal checkerboard.
REFERENCE_DESIGN = {"design": "paired", "conditions": ["vertical", "horizontal"]}


def plan_demo(parallel=1, **options):
    """The plan of the demo: the paired reference analysis of the simulated sample.

    ``options``: those of ``nipype-secondlevel demo`` by their spec names (e.g.
    ``n_subjects=6``, ``threshold=4.0``, ``correction="maxT"``); ``parallel``: the
    most permutation chunks run at once (see :func:`~..design.plan.plan_analysis`).
    """
    values = resolve(options, "demo", fixed=REFERENCE_DESIGN)
    n = values["n_subjects"]
    if n < 2:
        raise bad_input("--n-subjects", f"a paired test needs at least 2, got {n}")
    check_simulation_fits(n)
    return make_plan(values, "demo", rows=simulation_rows(n, REFERENCE_DESIGN["conditions"]),
                     source="simulation", grid=(LOCALIZER_SHAPE, LOCALIZER_AFFINE),
                     made_by=planner_call("plan_demo", parallel, **options), parallel=parallel)


def plan_localizer(parallel=1, **options):
    """The plan of the reference analysis on Brainomics/Localizer (``n_subjects`` 2..94;
    ``estimation="mixed"`` or ``"fixed"`` with the first-level variances; ``parallel`` as
    :func:`plan_demo`'s)."""
    values = resolve(options, "localizer", fixed=REFERENCE_DESIGN)
    n = values["n_subjects"]
    if not 2 <= n <= 94:
        raise bad_input("--n-subjects", f"the Localizer has 94 subjects, got {n}")
    rows = localizer_rows(range(1, n + 1), REFERENCE_DESIGN["conditions"])
    return make_plan(values, "localizer", rows=rows, source="localizer",
                     grid=(LOCALIZER_SHAPE, LOCALIZER_AFFINE),
                     made_by=planner_call("plan_localizer", parallel, **options), parallel=parallel)


def exported_outputs(plan):
    """outputnode field of the analysis -> its name rule(s) (:mod:`..io.naming`), for
    every file the analysis exports (one rule per contrast for per-contrast outputs)."""
    contrasts = plan.contrasts

    def each(output, **entities):
        return [naming.output_name(output, contrast=c.label, **entities) for c in contrasts]

    exports = {
        "plan_file": naming.PLAN,
        "design_table": naming.DESIGN_TABLE,
        "design_plot": naming.DESIGN_PLOT,
        "mask_file": naming.output_name("mask"),
        "coverage_map": naming.output_name("coverage"),
        "contrast_files": [naming.contrast_maps(c.label, c.kind) for c in contrasts],
        "thresholded_maps": each("thresholded"),
        "cluster_tables": each("clusters"),
        "glass_brains": each("glass_brain" if plan.domain == "volume" else "surface_picture"),
    }
    if plan.weighted:
        exports["between_subject_variance"] = naming.output_name(
            "between_subject_variance", estimation=plan.options["estimation"])
    if plan.permutations:
        correction = plan.options["correction"]
        descs = [naming.correction_desc(correction, c.kind) for c in contrasts]
        exports.update({
            "logp_maps": [naming.logp_maps(c.label, c.kind) for c in contrasts],
            "null_distributions": each("nulls"),
            "corrected_maps": [naming.output_name("corrected", contrast=c.label, desc=d)
                               for c, d in zip(contrasts, descs)],
            "corrected_cluster_tables": [naming.output_name(
                "corrected_clusters", contrast=c.label, desc=d) for c, d in zip(contrasts, descs)],
        })
    if plan.domain != "volume":
        exports = {key: naming.on_domain(rule, plan.domain, naming.DOMAIN_MAPS[key])
                   if key in naming.DOMAIN_MAPS else rule for key, rule in exports.items()}
    return exports


def significance_names(plan):
    """The exported names of each contrast's significance map and cluster table."""
    exports = exported_outputs(plan)
    maps, tables = (("corrected_maps", "corrected_cluster_tables") if plan.permutations
                    else ("thresholded_maps", "cluster_tables"))
    # a map written on a surface or CIFTI domain: its first file (hemi-L on a surface)
    return [[next(iter(rule.values())) if isinstance(rule, dict) else rule, table]
            for rule, table in zip(exports[maps], exports[tables])]


def init_group_pipeline_wf(plan, out_dir, *, source=None, source_exports=None,
                           mem_gb=DEFAULTS["mem_gb"], report=True, graph=False, command=None,
                           python_call=None, copies=None, name="group_wf"):
    """The analysis of a plan, with its report and its export to ``out_dir``.

    Parameters
    ----------
    plan : Plan
        The analysis (:func:`~nipype_secondlevel.design.plan.plan_analysis`).
    out_dir : str
        Output folder of the sink: a BIDS derivatives dataset (its
        ``dataset_description.json`` is written by the ``dataset_description`` node).
    source : nipype Node or None
        Node with an ``inputs_table`` output giving the maps of a plan made from row
        labels (e.g. SimulatePaired, FetchLocalizer).
    source_exports : dict or None
        Outputs of ``source`` exported too: field -> exported name.
    mem_gb : float
        Memory budget (GiB) of the heavy nodes; results do not depend on it.
    report : bool
        Add a ``report`` node writing ``report.html`` (exported by the sink).
    graph : bool
        Add a ``graph`` node drawing the pipeline's graph
        (``desc-pipeline_graph.{dot,svg,png}``, exported; needs Graphviz's ``dot``).
    command, python_call : str or None
        How the run was started, written in the report and in
        ``dataset_description.json``: the command line, else the Python call (by
        default this builder's, with the plan's own call).
    copies : dict or None
        Input files exported as they are: sink field -> (exported name, path).
    name : str
        Workflow name.

    Nodes: the source (if any), ``group_analysis_wf``, ``dataset_description``,
    ``graph`` (with ``graph``), ``report`` and ``sink``, which names every file.
    """
    if (source is None) != (plan.design.paths is not None):
        raise ValueError("a plan made from row labels needs a source node, and only it")
    workflow = pe.Workflow(name=name)
    analysis_wf = init_group_analysis_wf(plan, mem_gb=mem_gb)
    python_call = python_call or f"init_group_pipeline_wf({plan.made_by}, {str(out_dir)!r})"
    analysis = exported_outputs(plan)
    names = {**analysis, **{f"source_{k}": v for k, v in (source_exports or {}).items()},
             "dataset_description": naming.DATASET_DESCRIPTION,
             "bidsignore": naming.BIDSIGNORE}
    if any(plan.options.get(k) for k in ("bids_dir", "feat_dirs", "spm_dirs")):
        # the inputs table built from the BIDS, FEAT or SPM folders
        names["inputs_table"] = naming.INPUTS_TABLE
    names.update({key: rule for key, (rule, _) in (copies or {}).items()})
    if report:
        names["report"] = naming.REPORT
    if graph:
        names["graph"] = naming.graph_files()
    # Writing the description and copying are quick: on a cluster they run in the
    # submitting process instead of waiting for a job each.
    description = pe.Node(DatasetDescription(command=command or python_call),
                          name="dataset_description", run_without_submitting=True)
    # The run's inputs, which the export never removes nor replaces.
    inputs = [*(plan.options.get(k) for k in ("inputs_table", "design_file", "mask",
                                              "reference_map", "surface_left",
                                              "surface_right")),
              *map_files(plan.domain, [*(plan.design.paths or []),
                                       *(plan.design.variance_paths or [])]),
              *(path for _, path in (copies or {}).values())]
    sink = pe.Node(DerivativesSink(names=names, out_dir=str(out_dir),
                                   input_files=[str(f) for f in inputs if f is not None]),
                   name="sink", run_without_submitting=True)
    if "inputs_table" in names:
        sink.inputs.inputs_table = plan.options["inputs_table"]
    for key, (_, path) in (copies or {}).items():
        setattr(sink.inputs, key, str(path))
    if source is not None:
        workflow.connect(source, "inputs_table", analysis_wf, "inputnode.inputs_table")
        workflow.connect([(source, sink, [(field, f"source_{field}")
                                          for field in source_exports or {}])])
    workflow.connect([
        (analysis_wf, sink, [(f"outputnode.{field}", field) for field in analysis]),
        (description, sink, [("out_file", "dataset_description"),
                             ("bidsignore", "bidsignore")]),
    ])
    if graph:
        drawing = pe.Node(PipelineGraph(), name="graph", run_without_submitting=True)
        workflow.connect(drawing, "out_files", sink, "graph")
    report_node = None
    if report:
        report_node = add_report(
            workflow, source, analysis_wf, sink, plan.options, command=command,
            python_call=python_call, inputs_table=plan.options.get("inputs_table"),
            file_names=significance_names(plan), domain=plan_domain_value(plan))
    if graph:
        # The graph drawn once every node, this one included, is in the workflow.
        drawing.inputs.graph_dot = (report_node.inputs.graph_dot if report
                                    else workflow_dot(workflow))
    return workflow


def init_demo_wf(out_dir, plan=None, *, name="demo_wf", **pipeline):
    """The reference analysis on the built-in simulated sample (no network).

    The simulation (node ``simulate``, :class:`SimulatePaired`) feeds the group
    analysis with the paired design (vertical minus horizontal); the simulation's
    ground-truth mask is exported too. ``plan``: :func:`plan_demo` (default: its
    defaults); ``pipeline``: options of :func:`init_group_pipeline_wf`.
    """
    plan = plan or plan_demo()
    source = pe.Node(SimulatePaired(n_subjects=plan.options["n_subjects"],
                                    seed=plan.options["seed"]), name="simulate")
    pipeline.setdefault("python_call", f"init_demo_wf({str(out_dir)!r}, {plan.made_by})")
    return init_group_pipeline_wf(
        plan, out_dir, source=source, name=name,
        source_exports={"truth_mask": naming.output_name("truth_mask")}, **pipeline)


def init_localizer_wf(out_dir, plan=None, *, data_dir=None, name="localizer_wf",
                      **pipeline):
    """The reference analysis on Brainomics/Localizer (vertical vs horizontal checkerboard).

    The fetch (node ``fetch``, :class:`FetchLocalizer`, from ``data_dir``) feeds the
    group analysis with the paired design. With a plan of ``estimation="mixed"`` or
    ``"fixed"`` the same node also fetches the t maps and writes each map's first-level
    variance, (contrast / t)^2, so the graph differs from the OLS one only in the
    estimator (``estimate`` and ``masked_variances``). ``plan``: :func:`plan_localizer`.
    """
    plan = plan or plan_localizer()
    fetch = pe.Node(FetchLocalizer(n_subjects=plan.options["n_subjects"],
                                   variances=plan.weighted), name="fetch")
    if data_dir is not None:
        fetch.inputs.data_dir = str(data_dir)
    pipeline.setdefault("python_call", f"init_localizer_wf({str(out_dir)!r}, {plan.made_by}"
                        + (f", data_dir={str(data_dir)!r})" if data_dir else ")"))
    return init_group_pipeline_wf(plan, out_dir, source=fetch, name=name, **pipeline)


def init_model_pipeline_wf(plans, out_dir, model_file, *, name="model_wf", **pipeline):
    """Several analyses in one workflow (a BIDS Stats Model's ``GroupBy`` groups), so
    that MultiProc or SLURM run them side by side.

    ``plans``: (folder name, Plan) of each analysis, whose
    :func:`init_group_pipeline_wf` (named ``analysis_<folder>``, ``pipeline`` its
    options) exports into the results subfolder ``out_dir/<folder>``, with a copy of
    ``model_file`` (:data:`MODEL_COPY`).
    """
    workflow = pe.Workflow(name=name)
    for folder, plan in plans:
        workflow.add_nodes([init_group_pipeline_wf(
            plan, str(Path(out_dir) / folder), copies={"model": (MODEL_COPY, str(model_file))},
            name="analysis_" + re.sub(r"\W", "_", folder), **pipeline)])
    return workflow
