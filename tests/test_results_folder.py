"""The results folder holds exactly this run's results; folders that cannot are refused."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from group_data import make_group_table
from test_cli import run_cli

from nipype_secondlevel.cli import main

MANIFEST = ".nipype-secondlevel-results.json"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("results") / "data", n_subjects=4,
                            conditions=("a",))


def run(table, out, work, *options):
    return main(["run", "--inputs", str(table), "--out-dir", str(out), "--work-dir",
                 str(work), "--quiet", *options])


def listed(captured, out):
    """The file names printed under 'Results in <out>:'."""
    lines = captured.out.splitlines()
    start = lines.index(f"Results in {out}:")
    return [line.strip() for line in lines[start + 1:]]


def test_an_earlier_runs_results_are_removed(tmp_path, table, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    assert run(table, out, work, "--contrast", "intercept", "--contrast", "neg=0-intercept") == 0
    first = sorted(p.name for p in out.iterdir())
    assert any(n.startswith("contrast-neg_") for n in first)
    capsys.readouterr()
    assert run(table, out, work, "--contrast", "intercept") == 0
    names = sorted(p.name for p in out.iterdir())
    # This run's files only: the other contrast's maps, tables and pictures are gone.
    assert not any(n.startswith("contrast-neg_") for n in names)
    assert MANIFEST in names
    assert listed(capsys.readouterr(), out) == [n for n in names if n != MANIFEST]
    assert json.loads((out / MANIFEST).read_text())["files"] == [n for n in names
                                                                 if n != MANIFEST]
    assert {n for n in first if not n.startswith("contrast-neg_")} == set(names)


def test_a_killed_exports_leftovers_are_removed(tmp_path, table, capsys):
    """The manifest lists old and new files while an export runs: a file of ours that a
    killed export left is removed by the next run, a user's file is never touched."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert run(table, out, work) == 0
    names = json.loads((out / MANIFEST).read_text())["files"]
    (out / "contrast-old_stat-z_statmap.nii.gz").write_bytes(b"old")
    (out / MANIFEST).write_text(json.dumps({"files": [*names,
                                                      "contrast-old_stat-z_statmap.nii.gz"]}))
    assert run(table, out, work) == 0
    assert not (out / "contrast-old_stat-z_statmap.nii.gz").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, MANIFEST])


def test_a_folder_holding_other_files_is_refused_or_replaced(tmp_path, table, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "figures").mkdir()
    assert run(table, out, work) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"nipype-secondlevel: error: --out-dir {out}: holds 2 file(s) or folder(s) "
                   "that nipype-secondlevel did not write (figures, notes.txt); choose another "
                   "folder, or add --replace-results to delete them")]
    assert (out / "notes.txt").read_text() == "mine" and not work.exists()
    assert run(table, out, work, "--replace-results") == 0
    assert not (out / "notes.txt").exists() and not (out / "figures").exists()


@pytest.mark.parametrize("work", ["out", "out/work"])
def test_a_work_folder_in_the_results_folder_is_refused(tmp_path, table, capsys, work):
    assert run(table, tmp_path / "out", tmp_path / work) == 1
    err = capsys.readouterr().err.strip().splitlines()
    where = "is the results folder" if work == "out" else "is inside the results folder"
    assert err == [(f"nipype-secondlevel: error: --work-dir {tmp_path / work}: {where} "
                   f"{tmp_path / 'out'}, which holds the results only: choose a work folder "
                   "outside it")]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--out-dir", "--work-dir"])
def test_an_empty_folder_option_is_an_argparse_error(tmp_path, table, option):
    result = run_cli("run", "--inputs", str(table), option, "", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: nipype-secondlevel run")
    assert lines[-1] == (f"nipype-secondlevel run: error: argument {option}: must not be "
                         "empty (give a folder, e.g. '.')")
    assert list(tmp_path.iterdir()) == []


def unwritable(tmp_path):
    """A folder this process cannot write in (root ignores permissions: /sys then)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK) or os.geteuid() == 0:
        folder = Path("/sys")
        try:
            (folder / "nsl-probe").touch()
        except OSError:
            return folder
        pytest.skip("no folder this process cannot write in")
    return folder


@pytest.mark.parametrize("option", ["--out-dir", "--work-dir"])
def test_unusable_folders_are_refused_before_anything_runs(tmp_path, table, capsys, option):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    read_only = unwritable(tmp_path)
    other = "--work-dir" if option == "--out-dir" else "--out-dir"
    cases = {a_file: "exists and is not a folder",
             a_file / "sub": f"cannot be created: {a_file} is not a folder",
             read_only / "new": f"cannot be written ({read_only}, where it would be created)"}
    for path, problem in cases.items():
        code = main(["run", "--inputs", str(table), option, str(path), other,
                     str(tmp_path / "other"), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert err[0].startswith(f"nipype-secondlevel: error: {option} {path}: {problem}"), err
        assert not (tmp_path / "other").exists()


def test_results_list_has_the_exported_names(tmp_path, table):
    """The manifest names are the files (no folder, no path) that the sink wrote."""
    out = tmp_path / "out"
    assert run(table, out, tmp_path / "work") == 0
    names = json.loads((out / MANIFEST).read_text())["files"]
    assert "design.tsv" in names and all("/" not in n for n in names)
    assert len(pd.read_csv(out / "design.tsv", sep="\t")) == 4


def test_a_full_results_folder_is_named_by_the_sink(tmp_path, monkeypatch):
    import errno

    from conftest import run_in

    from nipype_secondlevel import interfaces as ifc
    from nipype_secondlevel.interfaces import sink

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(sink, "copy_file", full)
    src = tmp_path / "design.tsv"
    src.write_text("a\n1\n")
    with pytest.raises(Exception, match=rf"results folder {tmp_path / 'out'}: cannot be "
                       "written: No space left on device"):
        run_in(tmp_path / "node", ifc.DerivativesSink(out_dir=str(tmp_path / "out"),
                                                      in_files=[str(src)]))
