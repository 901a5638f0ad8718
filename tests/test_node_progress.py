"""Progress lines from inside long nodes (io/progress.py), through the command line too."""

import io
import os
import re

from test_cli import run_cli
from test_run_permutations import write_table

from nipype_secondlevel.io.progress import INTERVAL_ENV, QUIET_ENV, Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_one_line_at_most_every_interval_with_the_time_left(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    clock, stream = Clock(), io.StringIO()
    progress = Progress("estimate", stream, clock)
    clock.now += 1.0
    progress(10, 100, "voxel chunks")  # before the interval: nothing
    clock.now += 5.0  # 6 s for 8,200 of 20,480: 8.98 s left
    progress(8200, 20480, "voxel chunks")
    clock.now += 1.0
    progress(9000, 20480, "voxel chunks")  # 1 s after the last line: nothing
    clock.now += 500.0
    progress(20479, 20480, "voxel chunks")
    progress(20480, 20480, "voxel chunks")  # done: the node's own line says so
    assert stream.getvalue().splitlines() == [
        "estimate: 40% (8,200 of 20,480 voxel chunks), 9 s left",
        "estimate: 100% (20,479 of 20,480 voxel chunks), 0 s left",
    ]
    monkeypatch.setenv(QUIET_ENV, "1")
    stream = io.StringIO()
    quiet = Progress("estimate", stream, clock)
    clock.now += 60.0
    assert list(quiet.track(range(3), 3, "maps")) == [0, 1, 2] and stream.getvalue() == ""


def test_a_permutation_run_prints_progress_lines_unless_quiet(tmp_path):
    table = write_table(tmp_path / "data", 9)
    # the default plugin (MultiProc on more than one CPU: the lines come from its workers),
    # one chunk of all the patterns
    args = ["run", "--inputs", str(table), "--design", "one-sample", "--correction", "tfce",
            "--n-perm", "600", "--n-chunks", "1", "--out-dir", "out", "--work-dir", "work"]
    env = {**os.environ, INTERVAL_ENV: "0"}
    env.pop(QUIET_ENV, None)
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    # 9 subjects: all 512 sign flips, 256 distinct two-sided (a flip and its negation
    # give one TFCE maximum), in batches of 128 maps
    lines = [line for line in result.stderr.splitlines() if line.startswith("permutations ")]
    assert len(lines) == 1 and re.fullmatch(
        r"permutations 0-511 of intercept: 50% \(128 of 256 distinct patterns\), \d+ s left",
        lines[0]), lines
    assert any(line.startswith("masked data: ") for line in result.stderr.splitlines())
    # --quiet: no line of the nodes' nor of their progress
    args[-4:] = ["--out-dir", "out2", "--work-dir", "work2", "--quiet"]
    quiet = run_cli(*args, cwd=tmp_path, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""
