"""The HTML report and the JSON sidecars: content, self-containment, and a real browser."""

import base64
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_chromium

from nipype_secondlevel.runtime.execution import run_workflow
from nipype_secondlevel.workflows import init_demo_wf, plan_demo

LABEL = "verticalVsHorizontal"
STATS = ("z", "t", "p", "effect", "variance")
SECTIONS = {"summary", "design", "contrasts", "results", "mask", "provenance"}
PROVENANCE = {"command", "parameters", "versions", "inputs", "graph", "runs"}
ANALYSIS_NODES = ("design", "mask", "estimate", "contrast", "threshold", "plot")


class Page(HTMLParser):
    """Everything the tests look at in one pass: ids, title, images, links, tables."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.images, self.urls, self.tags = set(), [], [], []
        self.title, self._in_title, self.text = "", False, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href", "srcset", "action", "poster", "data"):
            if key in attrs:
                self.urls.append(attrs[key] or "")
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)


@pytest.fixture(scope="module")
def report(demo_run):
    out_dir, _, _ = demo_run
    text = (out_dir / "report.html").read_text(encoding="utf-8")
    return text, Page(text)


def decode_data_uri(uri):
    head, _, payload = uri.partition(",")
    assert head in ("data:image/png;base64", "data:image/svg+xml;base64"), head[:40]
    return head, base64.b64decode(payload, validate=True)


def test_report_has_every_section(report, demo_run):
    text, page = report
    assert SECTIONS <= page.ids and PROVENANCE <= page.ids
    assert f"contrast-{LABEL}" in page.ids
    assert page.title == "Group analysis report: demo_wf"
    words = " ".join(page.text)
    # The threshold and the correction are stated with the maps.
    assert "uncorrected, |z| > 3.10 (two-sided)" in words
    assert "Degrees of freedom: 15." in words
    # Cluster table, design table and weights are HTML tables.
    assert page.tags.count("table") >= 6
    assert "Cluster Size (mm3)" in words and "vertical_vs_horizontal" in words
    # Provenance: versions, the call, every node, input checksums.
    for package in ("nipype", "nilearn", "nibabel", "numpy", "scipy", "pandas",
                    "nipype-secondlevel"):
        assert f"<th>{package}</th>" in text
    assert "init_demo_wf(" in words
    _, work_dir, _ = demo_run
    inputs = pd.read_csv(work_dir / "demo_wf" / "simulate" / "inputs.tsv", sep="\t")
    assert len(inputs) == 32
    for path in inputs.path[:3]:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() in words
    for node in ("simulate", *(f"group_analysis_wf.{n}" for n in ANALYSIS_NODES)):
        assert f"demo_wf.{node}" in words
    # A cold run: every node ran in the run that built the report.
    assert "from the cache</td>" not in text
    assert text.count("ran in this run</td>") >= 1 + len(ANALYSIS_NODES)


def test_every_image_is_an_embedded_png_or_svg(report):
    _, page = report
    expected = 4 + (shutil.which("dot") is not None)  # design, glass, slices, mask, graph
    assert len(page.images) >= expected
    for src in page.images:
        head, data = decode_data_uri(src)
        if head.endswith("png;base64"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:2000]
            assert b'href="http' not in data


def test_no_external_url_is_referenced(report):
    text, page = report
    assert page.urls, "expected at least the images and the section links"
    for url in page.urls:
        assert url.startswith(("data:", "#")), url[:80]
    # The one script is nilearn's viewer, inline in its iframe's srcdoc (its references
    # are checked by tests/test_viewer.py); the rest of the page has none.
    assert text.count("<iframe srcdoc=") == 1
    lowered = re.sub(r'srcdoc="[^"]*"', "", text).lower()
    assert "<script" not in lowered and "<link" not in lowered
    assert "@import" not in lowered and "url(" not in lowered


def test_sidecars_beside_every_map(demo_run):
    out_dir, _, _ = demo_run
    for stat in STATS:
        meta = json.loads((out_dir / f"contrast-{LABEL}_stat-{stat}_statmap.json").read_text())
        assert meta["Contrast"] == LABEL and meta["Statistic"] == stat
        assert meta["DegreesOfFreedom"] == 15.0  # 32 maps, 17 columns
        assert meta["Threshold"] is None
        assert meta["ContrastWeights"]["vertical_vs_horizontal"] == 1.0
        assert "design_matrix.tsv" in meta["Sources"] and "desc-group_mask.nii.gz" in meta["Sources"]
    meta = json.loads(
        (out_dir / f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.json").read_text()
    )
    assert meta["DegreesOfFreedom"] == 15.0 and meta["Statistic"] == "z"
    assert meta["Threshold"]["Value"] == pytest.approx(3.1)
    assert meta["Threshold"]["HeightControl"] == "none"
    assert meta["Threshold"]["Correction"] == "uncorrected"
    assert meta["Threshold"]["TwoSided"] is True
    assert meta["Sources"] == [f"contrast-{LABEL}_stat-z_statmap.nii.gz",
                               "desc-group_mask.nii.gz"]
    # Sources are named as exported (the labelled table keeps the name of the table).
    clusters = json.loads((out_dir / f"contrast-{LABEL}_stat-z_clusters.json").read_text())
    assert clusters["Sources"] == [f"contrast-{LABEL}_stat-z_clusters.tsv"]


def test_report_says_which_nodes_ran_after_a_threshold_change(demo_run, tmp_path):
    """The report is a cached node: rebuilt when its inputs change, with the new run's times."""
    _, work_dir, _ = demo_run
    work = tmp_path / "work"  # a copy keeps nipype's cache and leaves the shared one alone
    shutil.copytree(work_dir, work, symlinks=True)
    summary = run_workflow(init_demo_wf(str(tmp_path / "b"), plan_demo(alpha=0.01)),
                           work, progress=False)
    assert "demo_wf.report" in summary.executed
    text = (tmp_path / "b" / "report.html").read_text()
    words = " ".join(Page(text).text)
    assert "uncorrected p < 0.01, i.e. |z| > 2.58 (two-sided)" in words
    rows = {}
    for line in text.split("<tr>"):
        for node in ANALYSIS_NODES:
            if f"<td>demo_wf.group_analysis_wf.{node}</td>" in line:
                rows[node] = "ran in this run" in line
    assert rows == {n: n in ("threshold", "plot") for n in ANALYSIS_NODES}
    meta = json.loads(
        (tmp_path / "b" / f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.json").read_text()
    )
    assert meta["Threshold"]["HeightControl"] == "fpr" and meta["Threshold"]["Alpha"] == 0.01
    assert meta["DegreesOfFreedom"] == 15.0


def test_report_interface_takes_lists_of_contrasts(demo_run, tmp_path):
    """Later contrasts and inference methods add entries; glass brains are drawn if absent."""
    from conftest import run_in

    from nipype_secondlevel.interfaces import HTMLReport

    out_dir, _, _ = demo_run
    z = str(out_dir / f"contrast-{LABEL}_stat-z_statmap.nii.gz")
    thr = str(out_dir / f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.nii.gz")
    tsv = str(out_dir / f"contrast-{LABEL}_stat-z_clusters.tsv")
    result = run_in(tmp_path, HTMLReport(
        design_matrix=str(out_dir / "design.tsv"),
        mask_file=str(out_dir / "desc-group_mask.nii.gz"),
        stat_maps=[z, z], thresholded_maps=[thr, thr], cluster_tables=[tsv, tsv],
    ))
    page = Page(Path(result.out_file).read_text())
    # Two contrast sections, each with a drawn glass brain and slices; no graph given.
    assert sum(alt.startswith("data:image/png") for alt in page.images) == 2 * 2 + 1
    assert "The workflow graph was not given to the report." in " ".join(page.text)


def test_slices_and_viewer_nodes_are_embedded_as_nilearn_draws_them(report, demo_run):
    """The report's slices and viewer are drawn by nodes of their own: their files are in
    the page verbatim, and the slices are nilearn's plot_stat_map of the thresholded map at
    the cluster table's strongest peak, over the 2 mm MNI152 template, with its threshold."""
    import io

    import matplotlib
    import nibabel as nib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn.datasets.struct import MNI152_FILE_PATH
    from nilearn.plotting import plot_stat_map

    text, page = report
    out_dir, work_dir, _ = demo_run
    slices = (work_dir / "demo_wf" / "report_slices" / "slices_0.png").read_bytes()
    viewer = (work_dir / "demo_wf" / "report_viewers" / "viewer_0.html").read_text()
    assert viewer.startswith('<figure class="viewer"><iframe srcdoc=') and viewer in text
    assert "data:image/png;base64," + base64.b64encode(slices).decode() in page.images

    thresholded = out_dir / f"contrast-{LABEL}_stat-z_desc-thresholded_statmap.nii.gz"
    threshold = json.loads(thresholded.with_name(
        thresholded.name.replace(".nii.gz", ".json")).read_text())["Threshold"]["Value"]
    clusters = pd.read_csv(out_dir / f"contrast-{LABEL}_stat-z_clusters.tsv", sep="\t")
    peak = clusters.loc[clusters["Peak Stat"].abs().idxmax(), ["X", "Y", "Z"]]
    template = nib.load(MNI152_FILE_PATH).slicer[::2, ::2, ::2]
    fig = plt.figure(figsize=(9.0, 3.0))
    plot_stat_map(nib.load(thresholded), threshold=threshold, display_mode="ortho",
                  bg_img=nib.Nifti1Image(template.get_fdata(dtype="float32"), template.affine),
                  cut_coords=tuple(float(v) for v in peak), colorbar=True, title=LABEL,
                  figure=fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    assert buffer.getvalue() == slices


def test_graph_without_dot_is_explained(monkeypatch):
    from nipype_secondlevel.reporting import figures, html

    monkeypatch.setattr(figures.shutil, "which", lambda name: None)
    uri, why = figures.render_graph("digraph g { a -> b }")
    assert uri is None and "dot program is not installed" in why
    page = html.provenance_section(None, {}, None, None, "digraph g { a -> b }", [], None)
    assert "dot program is not installed" in page and "a -&gt; b" in page


def test_report_renders_in_headless_chromium(report, demo_run, tmp_path):
    """Open the report from disk in a real browser with no network; save a screenshot."""
    from PIL import Image, ImageStat

    out_dir, _, _ = demo_run
    url = (out_dir / "report.html").as_uri()
    screenshot = tmp_path / "report.png"

    def chromium(*args):
        return run_chromium(url, tmp_path, *args)

    shot = chromium("--window-size=1280,2400", f"--screenshot={screenshot}")
    assert screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == (1280, 2400)
        rgb = image.convert("RGB")
        # Not blank: many colours (pictures) and contrast (text, header).
        assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200
        assert max(ImageStat.Stat(rgb).stddev) > 20
        # The page's dark header band is drawn at the top.
        assert max(rgb.getpixel((640, 20))) < 100
    dom = chromium("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert Page(dom.stdout).title == "Group analysis report: demo_wf"
    assert f'id="contrast-{LABEL}"' in dom.stdout
    print(f"screenshot: {screenshot}")
