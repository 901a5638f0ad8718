"""Checked before the first node runs: the maps (from their headers), the tables and the
option values that could only fail later; argparse's own errors keep its convention."""

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from group_data import AFFINE, SHAPE, make_group_table, write_map
from test_cli import run_cli

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.cli import main


@pytest.fixture
def table(tmp_path):
    return make_group_table(tmp_path / "data", n_subjects=4, conditions=("a",))


def first_map(table):
    return table.parent / pd.read_csv(table, sep="\t")["path"][1]


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def refused(tmp_path, capsys, *options, command="run"):
    """Run the command; return its one error line (and check nothing ran)."""
    code = main([command, *options, "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
    return err[0]


def test_truncated_gzip_map_is_named_before_anything_runs(tmp_path, table, capsys):
    path = first_map(table)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=SHAPE).astype(np.float32),
                             AFFINE), path)  # noise does not compress: the header survives
    truncate(path, 0.8)
    assert nib.load(path).shape == SHAPE  # the header alone reads fine
    line = refused(tmp_path, capsys, "--inputs", str(table))
    assert line.startswith(f"nipype-secondlevel: error: input map {path}: its data cannot be "
                           "read (truncated or corrupted file?)")


def test_truncated_header_and_short_nii_are_named(tmp_path, table, capsys):
    path = first_map(table)
    truncate(path, 0.01)
    assert f"input map {path}: not a readable NIfTI image" in refused(
        tmp_path, capsys, "--inputs", str(table))
    rows = pd.read_csv(table, sep="\t")
    plain = table.parent / "plain.nii"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), plain)
    truncate(plain, 0.9)
    rows.loc[1, "path"] = "plain.nii"
    rows.to_csv(table, sep="\t", index=False)
    assert f"input map {plain}: is truncated: " in refused(tmp_path, capsys, "--inputs",
                                                            str(table))


def test_a_gzip_of_several_members_is_read_rather_than_refused(tmp_path, table):
    """A trailer that does not match the header (gzip members) is checked by reading."""
    from nipype_secondlevel.io.images import check_map_header

    path = first_map(table)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert check_map_header(path) == SHAPE


def test_maps_of_other_dimensions_are_named(tmp_path, table, capsys):
    path = first_map(table)
    nib.save(nib.Nifti1Image(np.ones(SHAPE + (2,), np.float32), AFFINE), path)
    assert (f"input map {path}: expected a 3D map, got 4D shape (10, 12, 10, 2)"
            in refused(tmp_path, capsys, "--inputs", str(table)))
    write_map(path, np.ones(SHAPE))
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), AFFINE), tmp_path / "flat.nii.gz")
    assert (f"--reference-map {tmp_path / 'flat.nii.gz'}: expected a 3D map, got 2D"
            in refused(tmp_path, capsys, "--inputs", str(table), "--reference-map",
                       str(tmp_path / "flat.nii.gz")))


def test_tables_with_no_rows_say_so(tmp_path, capsys):
    header_only = tmp_path / "header.tsv"
    header_only.write_text("subject\tcondition\tpath\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert (f"inputs table {header_only}: has no rows, only a header (subject, condition, "
            "path)") in refused(tmp_path, capsys, "--inputs", str(header_only))
    assert f"inputs table {empty}: is empty (no header, no rows)" in refused(
        tmp_path, capsys, "--inputs", str(empty))


def test_too_large_a_simulated_sample_is_refused(tmp_path, capsys):
    line = refused(tmp_path, capsys, "--n-subjects", "1000000", command="demo")
    assert line.startswith("nipype-secondlevel: error: --n-subjects 1000000: the simulation "
                           "holds every map in memory (")


@pytest.mark.parametrize("option, value, problem", [
    ("--seed", "-1", "must be an integer from 0 to 4,294,967,295, got -1"),
    ("--n-perm", "0", "must be an integer from 1 to 1,000,000, got 0"),
    ("--threshold", "inf", "must be a number above 0 and at most 40, got inf"),
    ("--mem-gb", "nan", "must be a number above 0 and at most 1e+06, got nan"),
    ("--cluster-size", "-2", "must be an integer from 0 to 10,000,000, got -2"),
    ("--n-procs", "0", "must be an integer from 1 to 1,000,000, got 0"),
    ("--smoothing-fwhm", "1e7", "must be a number above 0 and at most 1e+06, got 1e7"),
    ("--plugin-args", "[1, 2]",
     "must be a JSON object of finite values (name: value), got [1, 2]"),
])
def test_option_values_that_would_fail_later_are_argparse_errors(tmp_path, option, value,
                                                                 problem):
    result = run_cli("demo", option, value, "--out-dir", "out", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: nipype-secondlevel demo")
    assert lines[-1] == f"nipype-secondlevel demo: error: argument {option}: {problem}"
    assert list(tmp_path.iterdir()) == []


def test_node_side_reads_name_a_truncated_map(tmp_path, table):
    """From Python (no command-line check) the nodes reading data name the file."""
    path = first_map(table)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=SHAPE).astype(np.float32),
                             AFFINE), path)
    truncate(path, 0.8)
    paths = [str(table.parent / p) for p in pd.read_csv(table, sep="\t")["path"]]
    with pytest.raises(Exception, match=rf"input map {path}: its data cannot be read"):
        run_in(tmp_path / "mask", ifc.GroupMask(in_files=paths))


def test_the_header_check_reads_no_data_and_the_read_verifies_it(tmp_path, table):
    """The up-front check reads the header and the gzip trailer only; the checksum is
    verified where the data are read."""
    from nipype_secondlevel.io.images import check_map_header, load_img, read_data

    path = first_map(table)
    nib.save(nib.Nifti1Image(np.random.default_rng(1).normal(size=SHAPE).astype(np.float32),
                             AFFINE), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged middle, header and trailer intact
    path.write_bytes(bytes(data))
    assert check_map_header(path) == SHAPE
    with pytest.raises(Exception, match=rf"input map {path}: its data cannot be read"):
        read_data(load_img(path), path, "input map")


def test_a_map_inflating_beyond_its_header_is_refused_unread(tmp_path, table, capsys):
    """Issue 23: a small .nii.gz inflating far beyond its header's size is refused while
    streaming, before the run and in the nodes."""
    from nipype_secondlevel.io.images import load_img, read_data

    path = first_map(table)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw + bytes(64 * 2**20)))  # 64 MiB of zeros: 64 kB
    assert path.stat().st_size < 2**20 and nib.load(path).shape == SHAPE
    line = refused(tmp_path, capsys, "--inputs", str(table))
    assert line == (f"nipype-secondlevel: error: input map {path}: inflates beyond the "
                    f"{len(raw):,} bytes its header gives (data offset and voxels); refused "
                    "unread (a damaged file?)")
    with pytest.raises(Exception, match="inflates beyond"):
        read_data(load_img(path), path, "input map")


def test_a_header_claiming_more_than_its_stream_holds_is_refused_unreserved(
        tmp_path, table, capsys):
    """Issue 23 re-checked: a header giving 4 GB of voxels over 1 MiB of content is refused
    in one line saying how short it is, without reserving the 4 GB (a MemoryError before)."""
    path = first_map(table)
    header = nib.load(path).header.copy()
    header.set_data_shape((1000, 1000, 1000))
    header.set_data_offset(352)
    path.write_bytes(gzip.compress(header.binaryblock + bytes(4 + 2**20)))
    line = refused(tmp_path, capsys, "--inputs", str(table))
    assert line == (f"nipype-secondlevel: error: input map {path}: its data cannot be read "
                    f"(truncated or corrupted file?): EOFError: it ends after {352 + 2**20:,} "
                    "of the 4,000,000,352 bytes its header gives")


@pytest.mark.parametrize("kind", ["float32", "int16 scaled", "plain .nii", "big-endian",
                                  "qform only", "4D", "NIfTI-2", "Analyze"])
def test_the_header_read_alone_is_the_loaders(tmp_path, kind):
    """The up-front checks read a NIfTI-1 header from its bytes alone: the same shape,
    affine, data type, offset and scale slope as nibabel's loader (its reference), and no
    header for other formats (the loader then reads them)."""
    from nipype_secondlevel.io.images import nifti1_header

    rng = np.random.default_rng(2)
    affine = AFFINE @ np.array([[0, 1, 0, 2], [1, 0, 0, -3], [0, 0, -1, 5], [0, 0, 0, 1.0]])
    data = rng.normal(size=(4, 5, 6, 2) if kind == "4D" else (4, 5, 6))
    image_class = {"NIfTI-2": nib.Nifti2Image, "Analyze": nib.AnalyzeImage}.get(
        kind, nib.Nifti1Image)
    img = image_class(data.astype(np.int16 if kind == "int16 scaled" else np.float32), affine)
    if kind == "int16 scaled":
        img.header.set_slope_inter(0.25, 1.5)
    if kind == "big-endian":
        img = nib.Nifti1Image(img.dataobj, affine, img.header.as_byteswapped(">"))
    if kind == "qform only":
        img.set_sform(None, code=0)
    path = tmp_path / ("map.nii" if kind in ("plain .nii", "Analyze") else "map.nii.gz")
    if kind == "Analyze":
        path = tmp_path / "map.img"
    nib.save(img, path)
    header, loaded = nifti1_header(path), nib.load(path)
    if kind in ("NIfTI-2", "Analyze"):
        assert header is None
        return
    with nib.openers.ImageOpener(str(path)) as stream:
        written = type(loaded.header).from_fileobj(stream)
    assert header.get_data_shape() == loaded.shape
    assert np.array_equal(header.get_best_affine(), loaded.affine)
    assert header.get_data_dtype() == loaded.get_data_dtype()
    assert header.get_data_offset() == loaded.dataobj.offset
    assert header.endianness == written.endianness
    assert header["scl_slope"] == written["scl_slope"] == (0.25 if kind == "int16 scaled" else 1)
