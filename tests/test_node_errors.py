"""Every error, also one raised inside a node, ends the command with one line on stderr.

Each case is the real command in a subprocess: exit status 1, exactly one line
``nipype-secondlevel: error: <the problem, naming the file or folder>`` (and, when a
node failed, ``(details: <crash file>)``), and no Nipype log or traceback on stdout
or stderr. Full and read-only folders are small tmpfs mounts (skipped where this
process may not mount).
"""

import os
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import AFFINE, SHAPE, make_group_table, write_map
from test_cli import run_cli


def mount_tmpfs(folder, size, read_only=False):
    folder.mkdir(parents=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return folder


@pytest.fixture
def mounts(tmp_path):
    made = []

    def mount(name, size="64k", read_only=False):
        made.append(mount_tmpfs(tmp_path / name, size, read_only))
        return made[-1]

    yield mount
    for folder in made:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def table_of(tmp_path, **options):
    return make_group_table(tmp_path / "data", n_subjects=4, conditions=("a",), **options)


def map_path(table, row=1, column="path"):
    return table.parent / pd.read_csv(table, sep="\t")[column][row]


def corrupted_map(tmp_path, mounts):
    """64 bytes in the middle of the gzip stream replaced: header and size trailer intact,
    so only reading the data (in a node) finds it."""
    table = table_of(tmp_path)
    path = map_path(table)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = np.random.default_rng(0).bytes(64)
    path.write_bytes(bytes(data))
    return ["run", "--inputs", str(table)], rf"input map {path}: its data cannot be read"


def map_4d(tmp_path, mounts):
    table = table_of(tmp_path)
    path = map_path(table)
    nib.save(nib.Nifti1Image(np.ones(SHAPE + (2,), np.float32), AFFINE), path)
    return ["run", "--inputs", str(table)], rf"input map {path}: expected a 3D map"


def all_nan_map(tmp_path, mounts):
    table = table_of(tmp_path)
    path = write_map(map_path(table), np.full(SHAPE, np.nan))
    return (["run", "--inputs", str(table)],
            rf"input map {path}: has no finite value \(every voxel is NaN")


def all_zero_map(tmp_path, mounts):
    table = table_of(tmp_path)
    path = write_map(map_path(table), np.zeros(SHAPE))
    return ["run", "--inputs", str(table)], rf"input map {path}: is 0 in every voxel"


def negative_variance(tmp_path, mounts):
    table = table_of(tmp_path, variances=True)
    path = map_path(table, 2, "variance_path")
    variance = nib.load(path).get_fdata()
    variance[3, 4, 5] = -1.0
    write_map(path, variance)
    return (["run", "--inputs", str(table), "--estimation", "mixed"],
            rf"variance map {path}: has a variance of 0 or less, or infinite, at 1 voxel\(s\)")


def localizer_offline(tmp_path, mounts):
    return (["localizer", "--n-subjects", "3", "--data-dir", str(tmp_path / "empty")],
            rf"Localizer data folder {tmp_path / 'empty' / 'brainomics_localizer'}")


def results_folder_read_only(tmp_path, mounts):
    out = mounts("out", read_only=True)
    return (["run", "--inputs", str(table_of(tmp_path)), "--out-dir", str(out)],
            rf"--out-dir {out}: cannot be written: Read-only file system")


def results_folder_full(tmp_path, mounts):
    out = mounts("out", size="16k")
    return (["run", "--inputs", str(table_of(tmp_path)), "--out-dir", str(out)],
            rf"results folder {out}: cannot be written: No space left on device")


def work_folder_is_a_file(tmp_path, mounts):
    (tmp_path / "work").write_text("")
    return (["run", "--inputs", str(table_of(tmp_path)), "--work-dir", str(tmp_path / "work")],
            rf"--work-dir {tmp_path / 'work'}: exists and is not a folder")


def work_folder_read_only(tmp_path, mounts):
    work = mounts("work", read_only=True)
    return (["run", "--inputs", str(table_of(tmp_path)), "--work-dir", str(work)],
            rf"--work-dir {work}: cannot be written: Read-only file system")


def work_folder_full(tmp_path, mounts):
    work = mounts("work", size="64k")
    return (["run", "--inputs", str(table_of(tmp_path)), "--work-dir", str(work)],
            rf"work folder {work}: cannot be written: No space left on device \(node \w+")


#: case -> True when the error is found by a node (the line then gives a crash file)
CASES = {corrupted_map: True, map_4d: False, all_nan_map: True, all_zero_map: True,
         negative_variance: True, localizer_offline: True, results_folder_read_only: False,
         results_folder_full: True, work_folder_is_a_file: False,
         work_folder_read_only: False, work_folder_full: None}


@pytest.mark.parametrize("case", list(CASES), ids=lambda case: case.__name__)
def test_every_error_is_one_line_with_no_nipype_log(tmp_path, mounts, case):
    args, expected = case(tmp_path, mounts)
    defaults = {"--out-dir": str(tmp_path / "out"), "--work-dir": str(tmp_path / "work")}
    args += [x for option, value in defaults.items() if option not in args
             for x in (option, value)]
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env.pop("NO_PROXY", None)
    result = run_cli(*args, "--quiet", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(rf"nipype-secondlevel: error: {expected}", lines[0]), lines[0]
    for stream in (result.stdout, result.stderr):
        assert "nipype.workflow" not in stream and "Traceback" not in stream, stream
    assert "mask is invalid" not in lines[0] and "NodeExecutionError" not in lines[0]
    details = re.search(r"\(details: (\S+)\)$", lines[0])
    if CASES[case] is not None:
        assert bool(details) == CASES[case], lines[0]
    if details:
        assert "Traceback" in Path(details[1]).read_text()  # the crash file keeps them


def test_the_error_line_ends_the_progress_lines(tmp_path):
    """Without --quiet: progress lines, then the one error line, and no nipype log."""
    table = table_of(tmp_path)
    path = write_map(map_path(table), np.zeros(SHAPE))
    result = run_cli("run", "--inputs", str(table), "--out-dir", "out", "--work-dir", "work",
                     cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert re.fullmatch(r"\[\d+/\d+\] group_wf.group_analysis_wf.summarize_maps: FAILED",
                        lines[-2])
    assert lines[-1].startswith(f"nipype-secondlevel: error: input map {path}: is 0 in every "
                                "voxel")
    assert [ln for ln in lines if "error" in ln] == lines[-1:]
    assert result.stdout == ""

