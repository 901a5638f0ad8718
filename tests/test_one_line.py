"""Whatever a user types, one line: names longer than the file system allows, a contrast
label too long for a file name, smoothing wider than the maps, control characters in a
table's values (shown escaped, never sent raw to the terminal)."""

import pandas as pd
import pytest
from group_data import file_checksums, make_group_table

from nipype_secondlevel.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("one_line") / "data", n_subjects=4,
                            conditions=("a",))


def run(table, tmp_path, *options):
    return main(["run", "--inputs", str(table), "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet", *options])


def one_line(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    return err[0]


def test_a_name_longer_than_the_file_system_allows_is_one_line(data, tmp_path, capsys):
    long = "x" * 300
    for options in (["--inputs", str(tmp_path / long / "inputs.tsv")],
                    ["--inputs", str(data), "--out-dir", str(tmp_path / long)]):
        code = main(["run", *options, "--work-dir", str(tmp_path / "work"), "--quiet"])
        path = options[-1]
        assert one_line(capsys, code) == (
            f"nipype-secondlevel: error: {path}: a name in this path is longer than the "
            "file system allows (File name too long)")
    assert not (tmp_path / "work").exists()


def test_a_long_contrast_label_is_shortened_with_a_stable_hash(data, tmp_path):
    name = "effect" + "Of" * 150
    assert run(data, tmp_path, "--contrast", f"{name}=intercept") == 0
    z = sorted(p.name for p in (tmp_path / "out").glob("contrast-*_stat-z_statmap.nii.gz"))
    assert len(z) == 1 and len(z[0]) < 120
    label = z[0][len("contrast-"):-len("_stat-z_statmap.nii.gz")]
    assert len(label) == 64 and name.startswith(label[:55]) and label[55] == "H"
    assert run(data, tmp_path, "--contrast", f"{name}=intercept") == 0  # the same names
    assert (tmp_path / "out" / z[0]).exists()


def test_smoothing_wider_than_the_field_of_view_is_refused(data, tmp_path, capsys):
    line = one_line(capsys, run(data, tmp_path, "--smoothing-fwhm", "1e6"))
    assert line == ("nipype-secondlevel: error: --smoothing-fwhm 1e+06: is wider than the "
                    "maps' field of view (36 mm): every map would be flattened; choose a "
                    "kernel smaller than the brain")
    assert not (tmp_path / "work").exists()


def test_control_characters_of_a_table_are_shown_escaped(data, tmp_path, capsys):
    """A subject label holding a terminal escape sequence (clear the screen) and a
    newline, given twice: the error line names it, escaped."""
    table = pd.read_csv(data, sep="\t")
    table["subject"] = ["s\x1b[2J\u202e1", "s\x1b[2J\u202e1", "s2", "s3"]
    path = data.parent / "escape.tsv"
    table.to_csv(path, sep="\t", index=False)
    before = file_checksums(data.parent)
    line = one_line(capsys, run(path, tmp_path, "--design", "one-sample"))
    assert line == (f"nipype-secondlevel: error: inputs table {path}: subject "
                    "s\\x1b[2J\\u202e1 has more than one map for condition a")
    assert "\x1b" not in line and file_checksums(data.parent) == before
