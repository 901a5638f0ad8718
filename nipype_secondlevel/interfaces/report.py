"""Report: one self-contained HTML page of an analysis (see :mod:`nipype_secondlevel.reporting.html`).

How run time and cache hits get into a cached node
--------------------------------------------------
Which nodes ran and for how long is only known once they have run. The report
node reads it from the result file nipype writes in every node's folder
(``result_<node>.pklz``: start, end, duration, host and the node's inputs); the
builder gives it the folders of the nodes upstream of it (``node_folders``,
relative to the folder of the workflow holding the report node), and it runs
after all of them because its inputs come from them.

"Came from the cache" needs the time the run began: ``run_started``. It and
the command line / Python call are ``nohash`` inputs, so they do not enter the
node's hash: an unchanged rerun takes the report from the cache like every
other node (only the always-running sink re-exports it), and the cached report
still describes the run that produced the results it shows. When anything
upstream changes, the report's file inputs change and it is rebuilt with the
new run's timings. We chose this over having ``run_workflow`` write a
provenance file after the run because the report must be a node whose output
the sink writes atomically with the other results, and because a report that
must run on every rerun would turn each warm rerun into a redraw.
"""

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.domains import load_domain
from ..io.files import atomic_path
from ..reporting.html import ContrastResult, build_report, contrast_slices, contrast_viewer
from ..reporting.provenance import node_runs


class _HTMLReportInputSpec(BaseInterfaceInputSpec):
    title = traits.Str("Group analysis report", usedefault=True, desc="page title")
    design_matrix = File(exists=True, mandatory=True,
                         desc="design matrix TSV, maybe with row-label columns first "
                         "(subject, condition, group: the design.tsv of GroupDesign)")
    design_plot = File(exists=True, desc="picture of the design matrix (PNG)")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    stat_maps = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="unthresholded z maps, one per contrast (with JSON sidecars)",
    )
    thresholded_maps = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="thresholded maps, one per entry of stat_maps (sidecars state the threshold)",
    )
    cluster_tables = InputMultiObject(
        File(exists=True), mandatory=True, desc="cluster tables (TSV), one per entry"
    )
    glass_brains = InputMultiObject(
        File(exists=True), desc="glass brain pictures, one per entry (drawn if not given)"
    )
    slices = InputMultiObject(
        File(exists=True), desc="orthogonal slices (PNG of ContrastSlices), one per entry "
        "(drawn if not given)")
    viewers = InputMultiObject(
        File(exists=True), desc="interactive viewers (HTML of ContrastViewer), one per entry "
        "(made if not given)")
    file_names = traits.List(
        traits.List(traits.Str, minlen=2, maxlen=2),
        desc="the exported names of each entry's thresholded map and cluster table "
        "(default: their own)")
    inputs_table = File(exists=True, desc="inputs table (subject, condition, path)")
    parameters = traits.Str(desc="analysis parameters as a JSON object")
    graph_dot = traits.Str(desc="the workflow graph in Graphviz DOT")
    node_folders = traits.Dict(
        traits.Str, traits.Str,
        desc="node full name -> folder relative to the folder of the report's workflow",
    )
    run_started = traits.Float(
        nohash=True, desc="epoch seconds the run began (nodes older came from the cache)"
    )
    command = traits.Str(nohash=True, desc="command line of the run")
    python_call = traits.Str(nohash=True, desc="Python call that built the workflow")
    domain = traits.Dict(desc="surface or CIFTI data (io.domains.domain_value): the maps "
                         "and the mask are its grid images, the pictures its surfaces")


class _HTMLReportOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="report.html")


def _get(value, default=None):
    return value if isdefined(value) else default


class HTMLReport(SimpleInterface):
    """Write ``report.html``: design, contrasts, maps, clusters, mask and provenance."""

    input_spec = _HTMLReportInputSpec
    output_spec = _HTMLReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        stat_maps = list(inputs.stat_maps)
        thresholded = list(inputs.thresholded_maps)
        clusters = list(inputs.cluster_tables)
        glass, slices, viewers = (list(_get(files, [None] * len(stat_maps))) for files in
                                  (inputs.glass_brains, inputs.slices, inputs.viewers))
        names = [tuple(n) if n else None
                 for n in _get(inputs.file_names, [None] * len(stat_maps))]
        if len({len(stat_maps), len(thresholded), len(clusters), len(glass), len(names),
                len(slices), len(viewers)}) > 1:
            raise ValueError(
                f"{len(stat_maps)} stat maps, {len(thresholded)} thresholded maps, "
                f"{len(clusters)} cluster tables, {len(glass)} glass brains, {len(slices)} "
                f"slices and {len(viewers)} viewers: give one of each per contrast"
            )
        contrasts = [ContrastResult(*files) for files in zip(
            stat_maps, thresholded, clusters, glass, names, slices, viewers)]
        run_started = _get(inputs.run_started)
        runs = node_runs(Path(runtime.cwd).parent, _get(inputs.node_folders, {}), run_started)
        text = build_report(
            title=inputs.title,
            design_matrix=inputs.design_matrix,
            mask_file=inputs.mask_file,
            contrasts=contrasts,
            design_plot=_get(inputs.design_plot),
            inputs_table=_get(inputs.inputs_table),
            parameters=json.loads(_get(inputs.parameters, "{}")),
            command=_get(inputs.command),
            python_call=_get(inputs.python_call),
            graph_dot=_get(inputs.graph_dot),
            runs=runs,
            run_started=run_started,
            domain=load_domain(inputs.domain) if isdefined(inputs.domain) else None,
        )
        out = Path(runtime.cwd) / "report.html"
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        self._results["out_file"] = str(out.absolute())
        return runtime


class _ContrastPictureInputSpec(BaseInterfaceInputSpec):
    stat_maps = InputMultiObject(File(exists=True), mandatory=True,
                                 desc="unthresholded z maps, one per contrast (with sidecars)")
    thresholded_maps = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="their thresholded maps (the sidecars state the thresholds)")


class _ContrastSlicesInputSpec(_ContrastPictureInputSpec):
    cluster_tables = InputMultiObject(File(exists=True), mandatory=True,
                                      desc="their cluster tables (the peaks)")


class _ContrastPictureOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(
        File(exists=True), desc="one per contrast: the picture (PNG) or the viewer (HTML)")


def _write_each(runtime, results, stem, suffix, make, *lists):
    """``make(*files)`` of each contrast written to ``<stem>_<i><suffix>`` atomically."""
    if len({len(files) for files in lists}) > 1:
        raise ValueError(f"{stem}: give one file of each kind per contrast")
    results["out_files"] = []
    for i, files in enumerate(zip(*lists)):
        content = make(*files)
        out = Path(runtime.cwd) / f"{stem}_{i}{suffix}"
        with atomic_path(out) as tmp:
            (tmp.write_bytes(content) if isinstance(content, bytes)
             else tmp.write_text(content, encoding="utf-8"))
        results["out_files"].append(str(out.absolute()))
    return runtime


class ContrastSlices(SimpleInterface):
    """The report's orthogonal slices of each contrast (``slices_<i>.png``), drawn beside
    the other nodes rather than inside the report node."""

    input_spec = _ContrastSlicesInputSpec
    output_spec = _ContrastPictureOutputSpec

    def _run_interface(self, runtime):
        return _write_each(runtime, self._results, "slices", ".png", contrast_slices,
                           self.inputs.stat_maps, self.inputs.thresholded_maps,
                           self.inputs.cluster_tables)


class ContrastViewer(SimpleInterface):
    """The report's interactive viewer of each contrast's z map (``viewer_<i>.html``, a
    fragment of the page), made beside the other nodes rather than inside the report node."""

    input_spec = _ContrastPictureInputSpec
    output_spec = _ContrastPictureOutputSpec

    def _run_interface(self, runtime):
        return _write_each(runtime, self._results, "viewer", ".html", contrast_viewer,
                           self.inputs.stat_maps, self.inputs.thresholded_maps)
