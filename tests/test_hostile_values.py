"""Numbers a hostile input holds never reach a statistic: non-finite contrast weights, a
cluster-forming p whose threshold is infinite, values beyond float32, scale slopes nibabel
ignores, affines that place no voxel; every JSON written is strict."""

import json
import shutil
import struct

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import file_checksums, make_group_table
from test_cli import run_cli

from nipype_secondlevel.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("hostile") / "data", n_subjects=5,
                            conditions=("a",))


def copy_table(data, folder):
    """A copy of the table and its maps in ``folder`` (to change one map)."""
    shutil.copytree(data.parent, folder)
    table = folder / data.name
    return table, [folder / p for p in pd.read_csv(table, sep="\t")["path"]]


def one_line(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    return err[0]


def run(table, tmp_path, *options):
    return main(["run", "--inputs", str(table), "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet", *options])


@pytest.mark.parametrize("options, message", [
    (["--contrast", "[NaN]"], ("contrast [nan]: gives a weight that is not a finite number "
                              "(nan)")),
    (["--contrast", "1e308*intercept*10"], ("contrast '1e308*intercept*10': gives a weight that "
                                           "is not a finite number (inf)")),
    (["--contrast", "[1e13]"], "contrast [1e+13]: has a weight beyond +/-1e+12"),
    (["--correction", "cluster-size", "--cluster-forming-p", "5e-324"],
     ("--cluster-forming-p 4.94066e-324: is so small that the cluster-forming threshold is "
     "infinite (t with 4 degrees of freedom); choose a larger p")),
])
def test_numbers_that_cannot_make_a_statistic_are_refused(data, tmp_path, capsys, options,
                                                          message):
    before = file_checksums(data.parent)
    line = one_line(capsys, run(data, tmp_path, *options))
    assert line.startswith(f"nipype-secondlevel: error: {message}"), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
    assert file_checksums(data.parent) == before


def set_header_field(path, offset, fmt, value):
    """Write one field of an uncompressed NIfTI-1 header in place."""
    raw = bytearray(path.read_bytes())
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))


def test_values_beyond_float32_and_ignored_scale_slopes_are_said(data, tmp_path):
    """A float64 map holding 1e300 at a voxel (inf in float32): that voxel leaves the
    mask with the non-finite warning, and every map and JSON written is finite. An
    int16 map whose scale slope is NaN (nibabel reads it unscaled): one warning line."""
    table, maps = copy_table(data, tmp_path / "data")
    img = nib.load(maps[2])
    values = np.asanyarray(img.dataobj).astype(np.float64)
    values[4, 5, 5] = 1e300
    nib.save(nib.Nifti1Image(values, img.affine), maps[2])
    img = nib.load(maps[1])
    scaled = tmp_path / "data" / "maps" / "scaled.nii"
    nib.save(nib.Nifti1Image(np.round(np.asanyarray(img.dataobj) * 100).astype(np.int16),
                             img.affine), scaled)
    set_header_field(scaled, 112, "<f", float("nan"))  # scl_slope
    frame = pd.read_csv(table, sep="\t")
    frame.loc[1, "path"] = "maps/scaled.nii"
    frame.to_csv(table, sep="\t", index=False)
    result = run_cli("run", "--inputs", str(table), "--out-dir", "out", "--work-dir", "work",
                     "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if "scl_slope" in line or "left out" in line] == [
        (f"nipype-secondlevel: warning: input map {scaled}: its header's scale slope "
         "(scl_slope) is nan, which nibabel ignores: its integer values are read unscaled; if "
         "they were scaled, fix the header"),
        ("nipype-secondlevel: warning: 1 voxel(s) infinite in at least one map "
         f"(e.g. {maps[2]}) were left out of the analysis mask")]
    out = tmp_path / "out"
    mask = nib.load(out / "desc-group_mask.nii.gz").get_fdata()
    assert mask[4, 5, 5] == 0 and mask[4, 5, 4] == 1
    for path in out.glob("*.nii.gz"):
        assert np.all(np.isfinite(nib.load(path).get_fdata())), path.name

    def refuse(constant):
        raise ValueError(f"{constant} is not strict JSON")

    for path in out.glob("*.json"):
        json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("value, problem", [(float("nan"), "is not finite"),
                                            (0.0, "is singular (a voxel size of 0?)")])
def test_an_affine_that_places_no_voxel_is_refused_before_the_run(data, tmp_path, capsys,
                                                                  value, problem):
    table, maps = copy_table(data, tmp_path / "data")
    img = nib.load(maps[3])
    plain = tmp_path / "data" / "maps" / "bad.nii"
    header = img.header.copy()
    header.set_sform(img.affine, 1)
    header.set_qform(img.affine, 0)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header), plain)
    set_header_field(plain, 280, "<f", value)  # srow_x[0]
    frame = pd.read_csv(table, sep="\t")
    frame.loc[3, "path"] = "maps/bad.nii"
    frame.to_csv(table, sep="\t", index=False)
    line = one_line(capsys, run(table, tmp_path, "--quiet"))
    assert line == (f"nipype-secondlevel: error: input map {plain}: its affine (the header's "
                    f"voxel-to-world transform, sform or qform) {problem}: fix the header")
    assert not (tmp_path / "work").exists()
