"""Adding the HTML report node to a pipeline (see :class:`~nipype_secondlevel.interfaces.HTMLReport`)."""

import json
import os
import tempfile
import time

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from ..interfaces.report import ContrastSlices, ContrastViewer, HTMLReport


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def workflow_dot(workflow):
    """The workflow's hierarchical graph in Graphviz DOT (nipype's own drawing)."""
    fd, path = tempfile.mkstemp(suffix=".dot")
    os.close(fd)
    try:
        workflow.write_hierarchical_dotfile(dotfilename=path, colored=True, simple_form=True)
        with open(path) as stream:
            return stream.read()
    finally:
        os.unlink(path)


def upstream_node_folders(workflow, exclude):
    """Full name -> folder (relative to the workflow's folder) of the workflow's nodes.

    Identity nodes are left out (nipype removes them before running), and so are
    the nodes named in ``exclude`` (the report and what runs after it).
    """
    folders = {}
    for name in workflow.list_node_names():
        if name in exclude:
            continue
        if isinstance(workflow.get_node(name).interface, IdentityInterface):
            continue
        folders[f"{workflow.name}.{name}"] = name.replace(".", "/")
    return folders


#: Report inputs -> outputnode fields of ``init_group_analysis_wf``: per contrast,
#: the map that decides significance (permutation-corrected or thresholded), its
#: clusters and its glass brain.
REPORT_FIELDS = {
    "design_matrix": "design_table",
    "design_plot": "design_plot",
    "mask_file": "mask_file",
    "stat_maps": "z_maps",
    "thresholded_maps": "significance_maps",
    "cluster_tables": "significance_cluster_tables",
    "glass_brains": "glass_brains",
}


#: On a surface or CIFTI domain: the grid images of the mask and significance maps.
DOMAIN_REPORT_FIELDS = {**REPORT_FIELDS, "mask_file": "grid_mask",
                        "thresholded_maps": "significance_grid_maps"}


def add_picture_nodes(workflow, analysis_wf, report):
    """The report's slices and viewers of the contrasts as nodes of their own, which
    MultiProc runs beside the glass brain and the atlas labels instead of inside the
    report node at the end of the run."""
    pictures = {"slices": (ContrastSlices(), ["stat_maps", "thresholded_maps",
                                              "cluster_tables"]),
                "viewers": (ContrastViewer(), ["stat_maps", "thresholded_maps"])}
    for name, (interface, fields) in pictures.items():
        node = pe.Node(interface, name=f"report_{name}")
        workflow.connect([
            (analysis_wf, node, [(f"outputnode.{REPORT_FIELDS[f]}", f) for f in fields]),
            (node, report, [("out_files", name)]),
        ])


def add_report(workflow, source, analysis_wf, sink, parameters, command=None,
               python_call=None, inputs_table=None, file_names=None, domain=None):
    """Add an ``HTMLReport`` node named ``report`` and connect it to ``sink``'s input
    ``report``.

    Call this once the rest of ``workflow`` is connected: the report records
    the workflow's graph and the folders of the nodes it reports on.

    Parameters
    ----------
    workflow : nipype Workflow
        The pipeline; ``source``, ``analysis_wf`` and ``sink`` are in it.
    source : nipype Node or None
        Node with an ``inputs_table`` output (input files with checksums); None
        when the table is a file given as ``inputs_table``.
    analysis_wf : nipype Workflow
        The analysis (:func:`init_group_analysis_wf`; its outputnode fields of
        :data:`REPORT_FIELDS`).
    sink : nipype Node
        The export (:class:`~nipype_secondlevel.interfaces.DerivativesSink`), not
        reported on.
    parameters : dict
        The analysis options, shown in the report (JSON-serialisable values).
    command, python_call : str or None
        How the run was started, shown in the report (not part of the cache hash).
    inputs_table : str or None
        The inputs table, when there is no ``source`` node.
    file_names : list or None
        The exported names of each contrast's significance map and cluster table.
    domain : dict or None
        A surface or CIFTI analysis's domain (:func:`~..io.domains.domain_value`).
    """
    report = pe.Node(HTMLReport(title=f"Group analysis report: {workflow.name}"),
                     name="report")
    # Results written by nodes after this moment come from this run; older ones
    # from the cache. A workflow cannot run before it is built, so the build time
    # is a sound lower bound of the run's start.
    report.inputs.run_started = time.time()
    report.inputs.parameters = json.dumps(
        {k: _jsonable(v) for k, v in parameters.items()}, sort_keys=True
    )
    if command:
        report.inputs.command = command
    if python_call:
        report.inputs.python_call = python_call
    if file_names:
        report.inputs.file_names = file_names
    if domain is not None:
        report.inputs.domain = domain
    if source is None:
        report.inputs.inputs_table = str(inputs_table)
    else:
        workflow.connect(source, "inputs_table", report, "inputs_table")
    workflow.connect([
        (analysis_wf, report, [(f"outputnode.{field}", name) for name, field in
                               (REPORT_FIELDS if domain is None
                                else DOMAIN_REPORT_FIELDS).items()]),
        (report, sink, [("out_file", "report")]),
    ])
    if domain is None:
        add_picture_nodes(workflow, analysis_wf, report)
    report.inputs.node_folders = upstream_node_folders(workflow, exclude={"report", sink.name})
    report.inputs.graph_dot = workflow_dot(workflow)
    return report
