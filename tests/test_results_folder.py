"""The results folder holds this run's results; nothing else in it is ever removed or
overwritten (a user's files, changed results, links, the run's inputs), and folders that
cannot take the results are refused. Every data-loss case checks the checksums of every
file that was there."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import file_checksums, make_group_table, write_map
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


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_line(capsys, code, expected_code=1):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expected_code and len(err) == 1, err
    return err[0]


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
    # The manifest gives every file and its sha256.
    files = json.loads((out / MANIFEST).read_text())["files"]
    assert files == {n: [sha(out / n)] for n in names if n != MANIFEST}
    assert {n for n in first if not n.startswith("contrast-neg_")} == set(names)


def test_a_killed_exports_leftovers_are_removed(tmp_path, table, capsys):
    """A file of ours listed with its checksum (an export killed while renaming) and a
    killed export's staging folder are removed by the next run; a folder named like a
    staging folder that anyone may write in is not ours."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert run(table, out, work) == 0
    names = sorted(json.loads((out / MANIFEST).read_text())["files"])
    old = out / "contrast-old_stat-z_statmap.nii.gz"
    old.write_bytes(b"old")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"][old.name] = [sha(old)]
    (out / MANIFEST).write_text(json.dumps(manifest))
    staging = out / ".nipype-secondlevel-staging.k1ll3d00"
    staging.mkdir(mode=0o700)
    (staging / MANIFEST).write_text('{"generated_by": "nipype-secondlevel", "files": {}}')
    (staging / "design.tsv").write_text("half a cop")
    assert run(table, out, work) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, MANIFEST])
    (out / ".nipype-secondlevel-staging.notmine0").mkdir(mode=0o755)
    capsys.readouterr()
    line = one_line(capsys, run(table, out, work))
    assert "(.nipype-secondlevel-staging.notmine0)" in line


def test_the_users_data_in_the_results_folder_is_never_removed(tmp_path, capsys):
    """The user's table, maps, notes and a dot-folder in the results folder: refused
    without --replace-results; with it, kept untouched and said in one line; a run that
    fails afterwards leaves the previous results whole."""
    out, work = tmp_path / "out", tmp_path / "work"
    table = make_group_table(out, n_subjects=4, conditions=("a",))
    (out / "notes.txt").write_text("mine")
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main")
    before = file_checksums(out)
    line = one_line(capsys, run(table, out, work))
    assert line == (f"nipype-secondlevel: error: --out-dir {out}: holds 3 file(s) or "
                    "folder(s) that nipype-secondlevel did not write or that changed since "
                    "it wrote them (.git, maps, notes.txt), which it never removes; choose "
                    "another folder, or add --replace-results to keep them untouched "
                    "beside the results")
    assert file_checksums(out) == before and not work.exists()
    result = run_cli("run", "--inputs", str(table), "--out-dir", str(out), "--work-dir",
                     str(work), "--quiet", "--replace-results", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        (f"nipype-secondlevel: warning: --out-dir {out}: 3 file(s) or folder(s) that "
        "nipype-secondlevel did not write or that changed since it wrote them (.git, maps, "
        "notes.txt) are kept untouched beside the results")]
    after = file_checksums(out)
    assert {k: after[k] for k in before} == before
    assert "contrast-intercept_stat-z_statmap.nii.gz" in after
    # A run that fails in a node (a map of zeros) changes nothing in the folder.
    bad = make_group_table(tmp_path / "bad", n_subjects=4, conditions=("a",))
    first = pd.read_csv(bad, sep="\t")["path"][0]
    write_map(bad.parent / first, np.zeros(nib.load(bad.parent / first).shape))
    line = one_line(capsys, run(bad, out, work, "--replace-results"))
    assert "is 0 in every voxel" in line
    assert file_checksums(out) == after


@pytest.mark.parametrize("placed", ["names only", "another user's", "a link"])
def test_a_placed_manifest_deletes_nothing(tmp_path, table, capsys, placed):
    """A manifest someone else put in the folder lists the user's files: refused, and
    nothing it lists is touched (nor a file outside the folder it names)."""
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (tmp_path / "victim.txt").write_text("outside")
    files = {"notes.txt": [sha(out / "notes.txt")], "../victim.txt": []}
    text = json.dumps({"generated_by": "nipype-secondlevel", "files": files})
    if placed == "names only":
        text = json.dumps({"generated_by": "nipype-secondlevel",
                           "files": ["notes.txt", "../victim.txt"]})
    if placed == "a link":
        (tmp_path / "elsewhere.json").write_text(text)
        (out / MANIFEST).symlink_to(tmp_path / "elsewhere.json")
    else:
        (out / MANIFEST).write_text(text)
    if placed == "another user's":
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(out / MANIFEST, 4321, 4321)
    before = file_checksums(tmp_path)
    line = one_line(capsys, run(table, out, work))
    problem = {"names only": "holds 1 file(s) or folder(s) that nipype-secondlevel did not "
                             "write or that changed since it wrote them (notes.txt)",
               "another user's": f"its manifest {MANIFEST} belongs to another user (uid 4321)",
               "a link": f"its manifest {MANIFEST} is a symbolic link"}[placed]
    assert line.startswith(f"nipype-secondlevel: error: --out-dir {out}: {problem}"), line
    if placed == "names only":  # an older manifest: the files it names are not proven ours
        assert run(table, out, work, "--replace-results") == 0
        assert (out / "notes.txt").read_text() == "mine"
    else:
        assert run(table, out, work, "--replace-results") == 1
    after = file_checksums(tmp_path)
    assert {k: after[k] for k in before if k != f"out/{MANIFEST}"} == \
        {k: v for k, v in before.items() if k != f"out/{MANIFEST}"}


def test_links_and_changed_results_are_never_written_through_or_replaced(tmp_path, table,
                                                                          capsys):
    """A link named like a result (to a file outside) and a result the user changed:
    refused before the run; with --replace-results the export stops before moving
    anything in, and the previous results, the link's target and the change stay."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert run(table, out, work) == 0
    previous = file_checksums(out)
    victim = tmp_path / "victim.tsv"
    victim.write_text("precious")
    (out / "design.tsv").unlink()
    (out / "design.tsv").symlink_to(victim)
    capsys.readouterr()
    assert "(design.tsv)" in one_line(capsys, run(table, out, work))
    line = one_line(capsys, run(table, out, work, "--replace-results"))
    assert line.startswith(f"nipype-secondlevel: error: results folder {out}: holds a "
                           "design.tsv that nipype-secondlevel did not write (or that changed "
                           "since): this run's results were not moved in"), line
    assert victim.read_text() == "precious" and (out / "design.tsv").is_symlink()
    (out / "design.tsv").unlink()
    (out / "design.tsv").write_text("my edit")
    assert "(design.tsv)" in one_line(capsys, run(table, out, work))
    assert "holds a design.tsv" in one_line(capsys, run(table, out, work, "--replace-results"))
    assert (out / "design.tsv").read_text() == "my edit"
    del previous["design.tsv"]
    now = file_checksums(out)
    assert {k: now[k] for k in previous} == previous
    assert not [p for p in out.iterdir() if p.name.startswith(".nipype-secondlevel-staging")]


def test_an_input_in_the_results_folder_is_never_replaced(tmp_path, table, capsys):
    """--mask given from the results folder under the name of the mask a run writes: the
    run's mask differs, so the export stops; the input is as it was."""
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    first = nib.load(pd.read_csv(table, sep="\t")["path"].map(lambda p: table.parent / p)[0])
    box = np.zeros(first.shape)
    box[2:7, 2:8, 2:7] = 1
    mask = write_map(out / "desc-group_mask.nii.gz", box.astype(np.float64), first.affine)
    before = file_checksums(out)
    line = one_line(capsys, run(table, out, work, "--mask", str(mask)))
    assert line.startswith(f"nipype-secondlevel: error: results folder {out}: this run's "
                           f"desc-group_mask.nii.gz would replace {mask}, an input of the run: "
                           "nothing was moved in"), line
    assert file_checksums(out) == before


def test_graph_follows_the_results_folder_rules(tmp_path, capsys):
    """graph --out-dir: a link at a picture's name is refused (its target untouched);
    its own pictures are replaced by the next drawing."""
    out = tmp_path / "graph"
    out.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (out / "workflow_colored.png").symlink_to(victim)
    line = one_line(capsys, main(["graph", "--out-dir", str(out)]))
    assert line == (f"nipype-secondlevel: error: --out-dir {out}: holds 1 file(s) or "
                    "folder(s) that nipype-secondlevel did not write or that changed since "
                    "it wrote them (workflow_colored.png), which it never removes; choose "
                    "another folder")
    assert victim.read_bytes() == b"precious"
    (out / "workflow_colored.png").unlink()
    for _ in range(2):
        assert main(["graph", "--out-dir", str(out)]) == 0
    names = json.loads((out / MANIFEST).read_text())["files"]
    assert sorted(names) == sorted(f"workflow_{s}.{f}" for s in ("colored", "hierarchical")
                                   for f in ("dot", "png", "svg"))
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, MANIFEST])


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
    from nipype_secondlevel.io import results_folder

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(results_folder, "copy_file", full)
    src = tmp_path / "design.tsv"
    src.write_text("a\n1\n")
    with pytest.raises(Exception, match=rf"results folder {tmp_path / 'out'}: cannot be "
                       "written: No space left on device"):
        run_in(tmp_path / "node", ifc.DerivativesSink(out_dir=str(tmp_path / "out"),
                                                      names={"design": "design.tsv"},
                                                      design=str(src)))
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # the staging folder removed
    shutil.rmtree(tmp_path / "node")
