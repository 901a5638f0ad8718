"""Surface and CIFTI analyses through the command line: z maps against nilearn's
SecondLevelModel on SurfaceImage and a per-element scipy t test, exhaustive cluster and
TFCE p maps on a tiny mesh (extents in vertices or in mm^2 of vertex area) against a
brute-force loop over the sign flips written here, and the one-line refusals before
anything runs."""

import html
import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from surface_data import (
    N_VERTICES,
    cifti_layout,
    planar_mesh,
    smooth_sample,
    write_cifti,
    write_pair,
)
from surface_reference import nilearn_one_sample_z
from test_mesh_spatial import _brute_tfce, _components
from test_viewer import Resources

from nipype_secondlevel.cli import main
from nipype_secondlevel.io.meshes import fsaverage5_mesh


def run(folder, *args):
    return main(["run", "--out-dir", str(folder / "out"), "--work-dir", str(folder / "work"),
                 "--quiet", "--design", "one-sample", *args])


def write_table(folder, paths):
    table = folder / "inputs.tsv"
    pd.DataFrame({"subject": [f"{i:02d}" for i in range(len(paths))],
                  "path": [str(p) for p in paths]}).to_csv(table, sep="\t", index=False)
    return table


def write_surface(path, coordinates, faces):
    """A GIFTI surface (.surf.gii): a pointset and a triangle array."""
    nib.save(nib.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.asarray(coordinates, np.float32),
                                 intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(np.asarray(faces, np.int32),
                                 intent="NIFTI_INTENT_TRIANGLE")]), path)
    return path


def surface_map(folder, name, hemis="LR"):
    """A map of the run written on the surface, both hemispheres end to end."""
    return np.concatenate([nib.load(folder / "out" / f"hemi-{h}_{name}.func.gii")
                           .darrays[0].data for h in hemis]).astype(float)


@pytest.fixture(scope="module")
def fsaverage5_sample(tmp_path_factory):
    """A BIDS derivatives folder of fsaverage5 GIFTI pairs, as fMRIPrep names them."""
    folder = tmp_path_factory.mktemp("fsaverage5")
    bids = folder / "firstlevel"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({
        "Name": "surface maps", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "test"}]}))
    xyz = np.concatenate([fsaverage5_mesh(h).coordinates for h in ("left", "right")])
    maps = smooth_sample(xyz, 5, seed=1, effect=1.5, centre=300)
    pairs = []
    for i, y in enumerate(maps):
        func = bids / f"sub-{i:02d}" / "func"
        func.mkdir(parents=True)
        pairs.append(write_pair(func, f"{i:02d}", y[:N_VERTICES], y[N_VERTICES:]))
    return folder, pairs


def test_a_surface_run_gives_nilearns_z_on_the_surface(fsaverage5_sample):
    folder, pairs = fsaverage5_sample
    assert run(folder, "--bids-dir", str(folder / "firstlevel"), "--space", "fsaverage5",
               "--correction", "fdr") == 0
    table = pd.read_csv(folder / "out" / "inputs.tsv", sep="\t")
    assert table["path"].tolist() == [str(left) for left, _ in pairs]  # hemi-L: one row
    name = "contrast-intercept_stat-z_statmap"
    z = surface_map(folder, name)
    mask = surface_map(folder, "desc-group_mask") > 0
    from nipype_secondlevel.io.meshes import fsaverage5_medial_wall

    wall = np.concatenate([fsaverage5_medial_wall(h) for h in ("left", "right")])
    np.testing.assert_array_equal(mask, ~wall)  # every map has data off the medial wall
    np.testing.assert_allclose(z, nilearn_one_sample_z(pairs, mask), atol=1e-5)
    sidecar = json.loads((folder / "out" / f"hemi-R_{name}.json").read_text())
    assert sidecar["SpatialReference"]["Space"] == "fsaverage5"
    assert sidecar["Statistic"] == "z" and sidecar["DegreesOfFreedom"] == 4
    # FDR at 0.05 on the analysed vertices, Benjamini-Hochberg written here
    p = 2 * stats.norm.sf(np.abs(z[mask]))
    ranked = np.sort(p) <= 0.05 * np.arange(1, p.size + 1) / p.size
    kept = surface_map(folder, "contrast-intercept_stat-z_desc-thresholded_statmap") != 0
    assert kept.sum() == (np.flatnonzero(ranked).max() + 1 if ranked.any() else 0) > 0
    clusters = pd.read_csv(folder / "out" / "contrast-intercept_stat-z_clusters.tsv", sep="\t")
    assert clusters["Size"].sum() == kept.sum() and (clusters["Area (mm2)"] > 0).all()
    # no surface atlas offline: the peaks are vertex indices and mesh coordinates, said so
    table_sidecar = json.loads((folder / "out" / "contrast-intercept_stat-z_clusters.json")
                               .read_text())
    assert table_sidecar["Atlas"] is None and "vertex index" in table_sidecar["PeakLocation"]
    peak = clusters.iloc[0]
    hemi_offset = 0 if peak["Structure"] == "left" else N_VERTICES
    xyz = fsaverage5_mesh(peak["Structure"]).coordinates[int(peak["Peak"])]
    np.testing.assert_allclose(peak[["X", "Y", "Z"]].astype(float), xyz, atol=1e-6)
    assert abs(z[hemi_offset + int(peak["Peak"])]) == pytest.approx(np.abs(z[kept]).max(),
                                                                   rel=1e-5)
    assert (folder / "out" / "contrast-intercept_stat-z_surfaces.png").stat().st_size > 0
    report = (folder / "out" / "report.html").read_text()
    assert "Surfaces (lateral and medial views)" in report and "Glass brain" not in report
    assert f"{int(mask.sum())} of {2 * N_VERTICES} elements analysed" in report
    # the interactive surface viewer: nilearn's view_surf page inline, fetching nothing
    assert "Interactive surface viewer" in report and report.count("<iframe srcdoc=") == 1
    page = html.unescape(report.split('<iframe srcdoc="', 1)[1].split('"', 1)[0])
    inner = Resources(page)
    assert not re.search(r"<script[^>]*\bsrc\s*=", page) and "plotly" in page
    assert all(not re.match(r"\s*(https?:)?//", url) for url in inner.urls), inner.urls
    assert len(inner.scripts) >= 3 and "left and right hemispheres" in report


def test_a_cifti_run_gives_the_t_test_of_every_grayordinate(tmp_path):
    """Per-grayordinate coverage too: NaN in some subjects' maps (on the cortex and in the
    volume parts) leaves those grayordinates to the subjects present there, and those with
    fewer than --min-subjects leave the mask; the count map is a dscalar of the layout."""
    layout = cifti_layout()
    rng = np.random.default_rng(2)
    maps = rng.standard_normal((6, len(layout))) + 0.5
    gone = np.zeros(maps.shape, dtype=bool)
    gone[0, :7] = gone[1, 4:9] = True  # left cortex
    gone[2, -5:] = True  # the volume's grayordinates
    gone[[0, 1, 3], 20:22] = True  # three subjects left: out with --min-subjects 4
    paths = [write_cifti(tmp_path / f"sub-{i}_stat-effect_statmap.dscalar.nii", y[None],
                         layout) for i, y in enumerate(np.where(gone, np.nan, maps))]
    surfaces = [write_surface(tmp_path / f"{h}.surf.gii", fsaverage5_mesh(h).coordinates,
                              fsaverage5_mesh(h).faces) for h in ("left", "right")]
    with pytest.warns(UserWarning, match="2 element"):
        assert run(tmp_path, "--inputs", str(write_table(tmp_path, paths)),
                   "--min-subjects", "4", "--surface-left", str(surfaces[0]),
                   "--surface-right", str(surfaces[1])) == 0
    out = nib.load(tmp_path / "out" / "contrast-intercept_stat-z_statmap.dscalar.nii")
    assert out.header.get_axis(1) == layout
    count = nib.load(tmp_path / "out" / "stat-n_desc-coverage_statmap.dscalar.nii")
    assert count.header.get_axis(1) == layout
    n = (~gone).sum(axis=0)
    analysed = n >= 4
    np.testing.assert_array_equal(count.get_fdata()[0], np.where(analysed, n, 0))
    expected = np.zeros(len(layout))
    for g in np.flatnonzero(analysed):
        y = maps[~gone[:, g], g]
        t = stats.ttest_1samp(y, 0.0).statistic
        expected[g] = stats.norm.isf(stats.t.sf(t, df=len(y) - 1))
    np.testing.assert_allclose(out.get_fdata()[0], expected, rtol=1e-4, atol=1e-4)
    assert (~analysed).sum() == 2 and (n[analysed] < 6).sum() == 14


GRID = (7, 6)  # a tiny planar mesh: 42 vertices, two triangles per square


@pytest.fixture(scope="module")
def tiny_mesh(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    xy, faces = planar_mesh(*GRID)
    surfaces = [write_surface(folder / f"{h}.surf.gii", xy, faces) for h in ("left", "right")]
    n = len(xy)
    both = np.concatenate([xy, xy + [100.0, 0, 0]])
    maps = smooth_sample(both, 5, seed=4, effect=4.0, centre=8, width=4.0)
    pairs = [write_pair(folder, f"{i:02d}", y[:n], y[n:], space="tiny")
             for i, y in enumerate(maps)]
    edges = np.unique(np.sort(np.concatenate(
        [np.array(faces)[:, [0, 1]], np.array(faces)[:, [1, 2]],
         np.array(faces)[:, [2, 0]]]), axis=1), axis=0)
    corners = xy[np.array(faces)]
    third = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0],
                                    corners[:, 2] - corners[:, 0]), axis=1) / 6
    areas = np.zeros(n)
    for corner in range(3):
        np.add.at(areas, np.array(faces)[:, corner], third)
    return (folder, surfaces, pairs, maps, np.concatenate([edges, edges + n]),
            np.concatenate([areas, areas]))


def flipped_t_maps(maps):
    """The one-sample t map of every sign flip of the rows (all 2^n of them)."""
    n = len(maps)
    signs = np.array([[1 - 2 * ((k >> i) & 1) for i in range(n)] for k in range(2 ** n)])
    flipped = signs[:, :, None] * maps[None]
    return flipped.mean(1) / (flipped.std(1, ddof=1) / np.sqrt(n))


@pytest.mark.parametrize("correction, extent", [("cluster-size", "vertices"),
                                               ("cluster-size", None), ("tfce", None)])
def test_exhaustive_cluster_and_tfce_p_on_a_mesh_are_the_brute_force_enumeration(
        tiny_mesh, tmp_path, correction, extent):
    """Extents in vertices (--surface-extent vertices) or, by default, in mm^2."""
    _, surfaces, pairs, maps, edges, areas = tiny_mesh
    table = write_table(tmp_path, [left for left, _ in pairs])
    assert run(tmp_path, "--inputs", str(table), "--surface-left", str(surfaces[0]),
               "--surface-right", str(surfaces[1]), "--correction", correction,
               "--n-perm", "32", *(["--surface-extent", extent] if extent else []),
               *(["--cluster-forming-p", "0.05"] if correction != "tfce" else [])) == 0
    n = maps.shape[1]
    t_maps = flipped_t_maps(maps)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["options"]["surface_extent"] == (extent or "area")
    weights = areas if plan["options"]["surface_extent"] == "area" else None
    assert len(np.unique(areas)) > 2  # corners, edges and inside of the grid differ
    if correction == "cluster-size":
        threshold = plan["contrasts"][0]["permutations"]["cluster_forming"][1]

        def statistic(t):
            size = np.zeros(n)
            for sign in (1, -1):
                labels = _components(edges, n, sign * t > threshold)
                inside = labels >= 0
                counts = np.bincount(labels[inside], minlength=1,
                                     weights=None if weights is None else weights[inside])
                size[inside] = counts[labels[inside]]
            return size
        desc = "clusterSize"
    else:
        def statistic(t):
            return np.abs(_brute_tfce(t, edges, n, 1.0, 2.0, weights))
        desc = "TFCE"
    observed = statistic(t_maps[0])
    maxima = np.array([statistic(t).max() for t in t_maps])
    p = np.array([np.mean(maxima >= value * (1 - 1e-9)) for value in observed])
    logp = surface_map(tmp_path, f"contrast-intercept_stat-t_desc-{desc}_logp")
    assert observed.max() > 0 and 0 < p.min() < 1
    np.testing.assert_allclose(logp, -np.log10(p), atol=1e-6)
    sidecar = json.loads((tmp_path / "out" / f"hemi-L_contrast-intercept_stat-t_desc-{desc}"
                          "_logp.json").read_text())
    assert sidecar["Correction"]["Extent"]["Measure"] == (extent or "area")
    assert sidecar["Correction"]["Extent"]["Unit"] == ("elements" if extent else "mm2")
    nulls = pd.read_csv(tmp_path / "out" / "contrast-intercept_desc-nulls_permutations.tsv",
                        sep="\t")
    column = "max_cluster_size" if correction == "cluster-size" else "max_tfce"
    np.testing.assert_allclose(np.sort(nulls[column]), np.sort(maxima), rtol=1e-5)  # float32 maps


def _refusal(capsys, folder, *args):
    assert run(folder, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("nipype-secondlevel: error: ") and err.count("\n") == 1, err
    assert not (folder / "work").exists()
    return err


def test_bad_surface_inputs_are_refused_in_one_line_before_the_run(fsaverage5_sample,
                                                                   tmp_path, capsys):
    _, pairs = fsaverage5_sample
    lefts = [left for left, _ in pairs]
    short = write_pair(tmp_path, "09", np.ones(N_VERTICES - 2), np.ones(N_VERTICES - 2))
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [*lefts, short[0]])))
    assert "10240 vertices" in err and "sub-09_hemi-L" in err
    other = write_pair(tmp_path, "08", np.ones(N_VERTICES), np.ones(N_VERTICES), "fsaverage6")
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [*lefts, other[0]])))
    assert "several spaces" in err and "fsaverage6" in err
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, lefts)),
                   "--smoothing-fwhm", "6")
    assert "--smoothing-fwhm" in err and "surface maps" in err
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, lefts)),
                   "--surface-left", str(lefts[0]))
    assert "--surface-right" in err
    volume = tmp_path / "map.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), volume)
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [*lefts, volume])))
    assert "mix data domains" in err
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [volume, volume])),
                   "--surface-left", str(lefts[0]))
    assert "--surface-left" in err and "NIfTI volume" in err
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [volume, volume])),
                   "--correction", "tfce", "--surface-extent", "area")
    assert "--surface-extent area" in err and "NIfTI volume" in err
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, lefts)),
                   "--surface-extent", "vertices")
    assert "--surface-extent" in err and "--correction" in err


def test_cifti_maps_of_another_layout_are_refused_in_one_line(tmp_path, capsys):
    layout = cifti_layout()
    first = write_cifti(tmp_path / "a.dscalar.nii", np.ones((1, len(layout))), layout)
    other = layout[:-3]  # without the right putamen
    second = write_cifti(tmp_path / "b.dscalar.nii", np.ones((1, len(other))), other)
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [first, second])))
    assert "b.dscalar.nii" in err and "brain models" in err
    surfaces = [write_surface(tmp_path / f"{h}.surf.gii", fsaverage5_mesh(h).coordinates,
                              fsaverage5_mesh(h).faces) for h in ("left", "right")]
    err = _refusal(capsys, tmp_path, "--inputs", str(write_table(tmp_path, [first, first])),
                   "--surface-left", str(surfaces[0]), "--surface-right", str(surfaces[1]),
                   "--correction", "tfce", "--surface-extent", "area")
    assert "--surface-extent area" in err and "voxels" in err


def test_auto_extent_is_area_on_a_mesh_and_vertices_beside_voxels():
    from nipype_secondlevel.io.cifti import CiftiDomain
    from nipype_secondlevel.io.domains import surface_extent
    from nipype_secondlevel.io.surfaces import SurfaceDomain

    meshes = {h: fsaverage5_mesh(h) for h in ("left", "right")}
    layout = cifti_layout()
    assert surface_extent("auto", SurfaceDomain.fsaverage5()) == "area"
    assert surface_extent("auto", CiftiDomain(layout, meshes)) == "vertices"
    cortex = CiftiDomain(layout[:layout.surface_mask.sum()], meshes)  # no voxels
    assert surface_extent("auto", cortex) == "area"
    assert surface_extent("vertices", SurfaceDomain.fsaverage5()) == "vertices"


def test_the_readme_surface_command_runs(fsaverage5_sample, tmp_path, monkeypatch):
    """The command of the README's "Surface and CIFTI data", as written."""
    import re
    import shlex

    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Surface and CIFTI data"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)[0]
    command = shlex.split(block.replace("\\\n", " "))
    folder, _ = fsaverage5_sample
    (tmp_path / "derivatives").mkdir()
    (tmp_path / "derivatives" / "firstlevel").symlink_to(folder / "firstlevel")
    monkeypatch.chdir(tmp_path)
    assert command[:2] == ["nipype-secondlevel", "run"] and main(command[1:]) == 0
    out = tmp_path / "results" / "surface"
    for name in ("hemi-L_contrast-intercept_stat-z_statmap.func.gii",
                 "hemi-R_contrast-intercept_stat-t_desc-TFCE_logp.func.gii",
                 "contrast-intercept_stat-z_surfaces.png", "report.html"):
        assert (out / name).exists(), name
    corrected = pd.read_csv(out / "contrast-intercept_stat-z_desc-TFCEcorrected_clusters.tsv",
                            sep="\t")
    assert {"Size", "Area (mm2)", "Peak FWER p"} <= set(corrected.columns)
