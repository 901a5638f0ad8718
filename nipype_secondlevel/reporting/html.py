"""The HTML report of an analysis: one self-contained page a person reads.

Sections: design (picture and table), contrast weights, for each contrast the
thresholded glass brain and orthogonal slices with the threshold and correction
stated, an interactive viewer of the unthresholded z map with the threshold
marked (:mod:`~nipype_secondlevel.reporting.viewer`) and the cluster table (with
region names when atlases were used); on surfaces the surface pictures and nilearn's
``view_surf`` of both hemispheres (:mod:`~nipype_secondlevel.reporting.surface`), the analysis mask, and provenance (command line
or Python call, parameters, package versions, input files with SHA-256, the
workflow graph, per-node run time and cache hits).

Everything is embedded (pictures as base64 ``data:`` URIs, CSS inline; the only
JavaScript is nilearn's viewer, inline in an ``<iframe srcdoc>``), so the page
opens from disk with no network. Pictures are drawn
with matplotlib's Agg backend only.

This module builds the page from files; :class:`nipype_secondlevel.interfaces.HTMLReport`
is the Nipype node around it. Contrasts are lists of :class:`ContrastResult`,
so later contrasts and inference methods add entries (their threshold is
described by the thresholded map's JSON sidecar, see
:mod:`nipype_secondlevel.io.sidecars`).
"""

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..io.naming import output_name
from ..io.sidecars import read_sidecar, sidecar_path
from .figures import (
    data_uri,
    file_data_uri,
    glass_brain_uri,
    mask_uri,
    peak_coordinates,
    render_graph,
    slices_png,
)
from .provenance import input_files, package_versions
from .surface import surface_viewer_html
from .viewer import viewer_html

SECTIONS = {
    "summary": "Summary",
    "design": "Design matrix",
    "contrasts": "Contrasts",
    "results": "Thresholded maps and clusters",
    "mask": "Analysis mask",
    "provenance": "Provenance",
}


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1b1f24; background: #ffffff; line-height: 1.45; }
header { background: #1f3a5f; color: #ffffff; padding: 1.2em 2em; }
header h1 { margin: 0 0 0.2em 0; font-size: 1.6em; }
nav { padding: 0.6em 2em; background: #eef2f7; border-bottom: 1px solid #d0d7de; }
nav a { margin-right: 1.2em; color: #1f3a5f; text-decoration: none; font-weight: 600; }
main { padding: 0 2em 2em 2em; max-width: 1200px; }
section { border-bottom: 1px solid #d0d7de; padding: 0.6em 0 1.2em 0; }
h2 { color: #1f3a5f; } h3 { margin-bottom: 0.3em; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.2em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #eef2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.86em; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; }
.scroll { max-height: 28em; overflow: auto; display: inline-block; max-width: 100%; }
.note { color: #57606a; font-size: 0.92em; }
.threshold { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.4em 0.8em; }
.cached { color: #57606a; } .ran { color: #1a7f37; font-weight: 600; }
"""


@dataclass
class ContrastResult:
    """The files of one contrast under one inference method."""

    stat_map: str
    thresholded_map: str
    cluster_table: str
    glass_brain: str = None
    names: tuple = None  # the exported names of the thresholded map and the cluster table
    slices: str = None  # its orthogonal slices (PNG of contrast_slices); drawn if None
    viewer: str = None  # its viewer (HTML fragment of contrast_viewer); made if None


def esc(value):
    return html.escape(str(value), quote=True)


def img_tag(uri, alt):
    return f'<img src="{uri}" alt="{esc(alt)}">'


def table_html(frame, max_rows=None):
    """A DataFrame as an escaped HTML table; numbers right-aligned and rounded."""
    if max_rows is not None:
        frame = frame.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for value in values:
            if value is None or (isinstance(value, float) and pd.isna(value)):
                cells.append("<td></td>")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                text = (f"{int(value)}" if float(value).is_integer() and abs(value) < 1e15
                        else f"{value:.4g}")
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{esc(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def key_value_table(mapping):
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
        for k, v in mapping.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def _section(key, body, title=None):
    return (f'<section id="{key}"><h2>{esc(title or SECTIONS[key])}</h2>\n{body}\n'
            "</section>\n")


def dof_text(meta):
    """The degrees of freedom of a sidecar as a sentence (F: both; Kenward-Roger: median)."""
    dof = meta.get("DegreesOfFreedom")
    if dof is None:
        return ""
    if isinstance(dof, list):  # F: numerator and denominator
        return f" Degrees of freedom: {dof[0]:g} and {dof[1]:g}."
    if meta.get("DegreesOfFreedomMap"):
        return (f" Degrees of freedom: Kenward-Roger, per voxel (median {dof:.3g}; map "
                f"{meta['DegreesOfFreedomMap']}).")
    return f" Degrees of freedom: {dof:g}."


def _described(stat_map, thresholded_map, label):
    """A contrast's sidecar (its thresholded map's, else its z map's), label and threshold."""
    meta = read_sidecar(thresholded_map) or read_sidecar(stat_map)
    return meta, meta.get("Contrast", label), meta.get("Threshold") or {}


def contrast_slices(stat_map, thresholded_map, cluster_table, label="contrast"):
    """PNG bytes: the orthogonal slices of a contrast's thresholded map at its strongest
    peak, with the threshold of its sidecar (``label`` when the sidecar names none)."""
    import nibabel as nib

    _, label, threshold = _described(stat_map, thresholded_map, label)
    clusters = pd.read_csv(cluster_table, sep="\t")
    return slices_png(nib.load(thresholded_map), threshold.get("Value"),
                      peak_coordinates(clusters), label)


def contrast_viewer(stat_map, thresholded_map, label="contrast"):
    """HTML fragment: the interactive viewer of a contrast's z map, its threshold marked."""
    import nibabel as nib
    import numpy as np

    _, label, threshold = _described(stat_map, thresholded_map, label)
    z_threshold = threshold.get("Value")
    z_img = nib.load(stat_map)
    # With no voxel passing, the threshold drawn is the largest |z|: every voxel faint.
    marked = z_threshold if z_threshold is not None else float(
        np.nanmax(np.abs(np.asanyarray(z_img.dataobj)))) + 1e-3
    return viewer_html(z_img, marked, two_sided=threshold.get("TwoSided", True),
                       title=f"{label} (unthresholded z)")


def contrast_section(result, index, domain=None):
    """Glass brain, orthogonal slices, threshold statement and cluster table of a contrast;
    on a surface or CIFTI ``domain``, its surface picture (``result.glass_brain``)."""
    import nibabel as nib

    meta, label, threshold = _described(result.stat_map, result.thresholded_map,
                                        f"contrast {index + 1}")
    z_threshold = threshold.get("Value")
    description = threshold.get("Description", "threshold not recorded")
    clusters = pd.read_csv(result.cluster_table, sep="\t")
    title = f"{label}: {description.split(',')[0]}"
    names = result.names or (Path(result.thresholded_map).name, Path(result.cluster_table).name)
    if domain is not None:
        from ..io.domains import from_grid_image

        viewer = surface_viewer_html(from_grid_image(result.thresholded_map), domain,
                                     z_threshold, title=label)
        return _contrast_parts(label, threshold, description, meta, [
            "<h4>Surfaces (lateral and medial views)</h4>",
            img_tag(file_data_uri(result.glass_brain), f"surfaces of {label}"),
            f'<h4 id="viewer-{esc(label)}">Interactive surface viewer</h4>', viewer],
            clusters, names), label, meta
    if result.glass_brain:
        glass = file_data_uri(result.glass_brain)
    else:
        glass = glass_brain_uri(nib.load(result.thresholded_map), z_threshold, title)
    slices = (file_data_uri(result.slices) if result.slices else data_uri(contrast_slices(
        result.stat_map, result.thresholded_map, result.cluster_table, label), "image/png"))
    viewer = (Path(result.viewer).read_text(encoding="utf-8") if result.viewer
              else contrast_viewer(result.stat_map, result.thresholded_map, label))
    return _contrast_parts(label, threshold, description, meta, [
        "<h4>Glass brain</h4>", img_tag(glass, f"glass brain of {label}"),
        "<h4>Orthogonal slices (strongest peak)</h4>",
        img_tag(slices, f"orthogonal slices of {label}"),
        f'<h4 id="viewer-{esc(label)}">Interactive viewer of the unthresholded z map</h4>',
        viewer], clusters, names), label, meta


def _contrast_parts(label, threshold, description, meta, pictures, clusters, names):
    """A contrast's section: threshold statement, ``pictures``, clusters, file names."""
    n_clusters = int(pd.to_numeric(clusters.get("Cluster ID", pd.Series(dtype=str)),
                                   errors="coerce").notna().sum())
    parts = [
        f'<h3 id="contrast-{esc(label)}">Contrast {esc(label)}</h3>',
        f'<p class="threshold"><b>Threshold:</b> {esc(description)}. '
        f'<b>Correction:</b> {esc(threshold.get("Correction", "not recorded"))}.'
        + esc(dof_text(meta)) + "</p>",
        *pictures,
        f"<h4>Clusters ({n_clusters})</h4>",
        f'<div class="scroll">{table_html(clusters)}</div>' if not clusters.empty
        else "<p>No voxel survives the threshold.</p>",
        (f'<p class="note">Files: {esc(names[0])}, {esc(names[1])} (sidecar '
         f'{esc(sidecar_path(names[0]).name)}).</p>'),
    ]
    return "\n".join(parts)


def build_report(title, design_matrix, mask_file, contrasts, design_plot=None,
                 inputs_table=None, parameters=None, command=None, python_call=None,
                 graph_dot=None, runs=None, run_started=None, domain=None):
    """The report as one HTML string (see the module docstring).

    ``contrasts`` is a list of :class:`ContrastResult`; ``runs`` a list of
    :class:`NodeRun` (see :func:`node_runs`); ``domain``: a surface or CIFTI domain
    (``mask_file`` is then its grid image, :mod:`..io.domains`).
    """

    from ..design.matrices import read_labelled_design

    labels, design = read_labelled_design(design_matrix)
    body = []

    # Contrasts first: their sidecars feed the summary.
    contrast_parts = [contrast_section(c, i, domain) for i, c in enumerate(contrasts)]

    built = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    summary = {
        "built": built,
        "input maps": len(design),
        "design columns": design.shape[1],
        "contrasts": ", ".join(label for _, label, _ in contrast_parts) or "none",
    }
    body.append(_section("summary", key_value_table(summary)))

    design_html = []
    if design_plot:
        design_html.append(img_tag(file_data_uri(design_plot), "design matrix"))
    design_html.append(
        f"<p>{len(design)} rows (input maps) and {design.shape[1]} columns "
        f"({esc(Path(design_matrix).name)}; rows labelled by "
        f"{', '.join(labels.columns) or 'nothing'}, in the inputs table's order):</p>"
        f'<div class="scroll">{table_html(pd.concat([labels, design], axis=1))}</div>'
    )
    body.append(_section("design", "\n".join(design_html)))

    weights_rows = []
    for _, label, meta in contrast_parts:
        weights = meta.get("ContrastWeights") or {}
        # A t contrast has one row of weights, an F contrast a list of rows.
        rows = weights if isinstance(weights, list) else [weights]
        for i, row_weights in enumerate(rows):
            name = label if len(rows) == 1 else f"{label} (F, row {i + 1})"
            weights_rows.append({"contrast": name, **row_weights})
    weights = pd.DataFrame(weights_rows)
    if not weights.empty:
        nonzero = [c for c in weights.columns[1:] if weights[c].fillna(0).ne(0).any()]
        shown = weights[["contrast"] + nonzero]
        zero = len(weights.columns) - 1 - len(nonzero)
        weights_html = table_html(shown) + (
            f'<p class="note">The other {zero} column(s) have weight 0.</p>' if zero else "")
    else:
        weights_html = "<p>No contrast.</p>"
    body.append(_section("contrasts", "<p>Contrast weights (one row per t contrast, "
                         "one per row of an F contrast):</p>"
                         + weights_html))
    body.append(_section("results", "\n".join(part for part, _, _ in contrast_parts)))

    if domain is not None:
        body.append(_section("mask", domain_mask_html(domain, mask_file)))
    else:
        body.append(_section("mask", volume_mask_html(mask_file)))

    body.append(provenance_section(inputs_table, parameters, command, python_call,
                                   graph_dot, runs, run_started))

    nav = "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name in SECTIONS.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><div>nipype-secondlevel report, built {esc(built)}"
        "</div></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{''.join(body)}</main>\n</body>\n</html>\n"
    )


def domain_mask_html(domain, mask_file):
    """The mask section of a surface or CIFTI analysis: elements analysed, their area."""
    from ..io.domains import from_grid_image

    mask = from_grid_image(mask_file) > 0
    area = float(domain.vertex_areas()[mask].sum())
    return (f"<p>{int(mask.sum())} of {domain.n_elements} elements analysed "
            f"({area / 100:.0f} cm2 of cortex, {esc(domain.space or 'the surfaces given')}"
            f"; {esc(output_name('mask'))} written on the {domain.describe()['Domain']}).</p>")


def volume_mask_html(mask_file):
    """The mask section of a volume analysis: its slices, voxels and volume."""
    import nibabel as nib
    import numpy as np

    mask_img = nib.load(mask_file)
    n_voxels = int(np.count_nonzero(np.asanyarray(mask_img.dataobj)))
    voxel_mm3 = float(abs(np.linalg.det(mask_img.affine[:3, :3])))
    return (img_tag(mask_uri(mask_img), "analysis mask")
            + f"<p>{n_voxels} voxels ({n_voxels * voxel_mm3 / 1000:.0f} cm3, "
            f"{voxel_mm3:g} mm3 each) on a {' x '.join(map(str, mask_img.shape[:3]))} grid "
            f"({esc(output_name('mask'))}).</p>")


def provenance_section(inputs_table, parameters, command, python_call, graph_dot, runs,
                       run_started):
    parts = ["<h3 id=\"command\">How it was run</h3>"]
    if command:
        parts.append(f"<p>Command line:</p><pre>{esc(command)}</pre>")
    if python_call:
        parts.append(f"<p>Python call:</p><pre>{esc(python_call)}</pre>")
    if not command and not python_call:
        parts.append("<p>Not recorded.</p>")
    parts.append('<p class="note">As given to the run that built this report; a later run '
                 "that takes everything from the cache exports this report unchanged.</p>")

    parts.append('<h3 id="parameters">Parameters</h3>')
    parts.append(key_value_table(parameters) if parameters else "<p>Not recorded.</p>")

    parts.append('<h3 id="versions">Package versions</h3>')
    parts.append(key_value_table(package_versions()))

    parts.append('<h3 id="inputs">Input files</h3>')
    if inputs_table:
        files = input_files(inputs_table)
        parts.append(f"<p>{len(files)} file(s), listed in {esc(inputs_table)}:</p>")
        parts.append(f'<div class="scroll">{table_html(files)}</div>')
    else:
        parts.append("<p>Not recorded.</p>")

    parts.append('<h3 id="graph">Workflow graph</h3>')
    uri, why_not = render_graph(graph_dot)
    if uri:
        parts.append(img_tag(uri, "workflow graph"))
    else:
        parts.append(f"<p>{esc(why_not)}</p>")
        if graph_dot:
            parts.append(f"<details><summary>DOT source</summary><pre>{esc(graph_dot)}</pre>"
                         "</details>")

    parts.append('<h3 id="runs">Nodes: run time and cache</h3>')
    parts.append(runs_html(runs or [], run_started))
    return _section("provenance", "\n".join(parts))


def runs_html(runs, run_started):
    if not runs:
        return "<p>Not recorded.</p>"
    labels = {"ran": "ran in this run", "cached": "from the cache", "unknown": "unknown"}
    rows = []
    for run in runs:
        seconds = f"{run.seconds:.2f}" if run.seconds is not None else ""
        rows.append(
            f"<tr><td>{esc(run.name)}</td><td class=\"{run.status}\">{labels[run.status]}</td>"
            f'<td class="num">{seconds}</td><td>{esc(run.finished or "")}</td>'
            f"<td>{esc(run.hostname or '')}</td></tr>"
        )
    ran = [r for r in runs if r.status == "ran"]
    total = sum(r.seconds or 0 for r in ran)
    started = (datetime.fromtimestamp(run_started).astimezone().isoformat(timespec="seconds")
               if run_started else "unknown")
    table = ("<table><thead><tr><th>node</th><th>status</th><th>seconds</th>"
             "<th>finished</th><th>host</th></tr></thead><tbody>" + "".join(rows)
             + "</tbody></table>")
    details = "".join(
        f"<details><summary>{esc(r.name)}: inputs</summary>{key_value_table(r.inputs)}</details>"
        for r in runs if r.inputs
    )
    return (
        f"<p>{len(ran)} node(s) ran in the run that built this report (started {esc(started)}, "
        f"{total:.1f} s of node time), {sum(r.status == 'cached' for r in runs)} came from "
        "the cache. Seconds are those of the node's last execution. The report node and the "
        "nodes after it (collecting and exporting the results) are not listed.</p>"
        + table + "<h4>Inputs of every node</h4>" + details
    )
