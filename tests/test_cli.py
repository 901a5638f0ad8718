"""The nipype-secondlevel command: runs, errors, graph."""

import os
import shutil
import subprocess
import sys

import pytest
from localizer_folder import make_localizer_folder

from nipype_secondlevel.cli import main


def test_demo_prints_progress_and_where_results_are(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["demo", "--n-subjects", "6", "--out-dir", str(out),
                 "--work-dir", str(tmp_path / "work"), "--plugin", "MultiProc"])
    captured = capsys.readouterr()
    assert code == 0
    assert "[18/18] demo_wf.sink: done" in captured.err
    assert "demo_wf.group_analysis_wf.estimate: done in" in captured.err
    assert f"Results in {out}:" in captured.out
    assert "contrast-verticalVsHorizontal_stat-z_glassbrain.png" in captured.out
    assert (out / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()
    if len(os.sched_getaffinity(0)) > 1:  # the report's viewer drawn beside the glass brain
        viewer, plot = (node_times(tmp_path / "work" / "demo_wf" / folder) for folder
                        in ("report_viewers", "group_analysis_wf/plot/mapflow/_plot0"))
        assert viewer[0] < plot[1] and plot[0] < viewer[1]
    main(["demo", "--n-subjects", "6", "--out-dir", str(out),
          "--work-dir", str(tmp_path / "work"), "--plugin", "MultiProc"])
    captured = capsys.readouterr()
    assert "1 node(s) executed, 17 from the cache" in captured.out
    assert "demo_wf.group_analysis_wf.estimate: cached" in captured.err


def node_times(folder):
    """Start and end (datetime) of the node run in ``folder``, from nipype's result file."""
    from datetime import datetime

    from nipype.utils.filemanip import loadpkl

    runtime = loadpkl(next(folder.glob("result_*.pklz"))).runtime
    return tuple(datetime.fromisoformat(t) for t in (runtime.startTime, runtime.endTime))


def run_cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "nipype_secondlevel", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_bad_option_exits_non_zero_with_one_line(tmp_path):
    result = run_cli("demo", "--n-subjects", "1", "--out-dir", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nipype-secondlevel: error: --n-subjects: a paired test needs at least 2, got 1"
    ]
    assert not (tmp_path / "out").exists()


def test_failing_node_leaves_no_output_folder(tmp_path):
    """A fetch with no network and no data fails inside the workflow: one line, no output."""
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env.pop("NO_PROXY", None)
    result = run_cli("localizer", "--n-subjects", "3", "--data-dir", str(tmp_path / "empty"),
                     "--out-dir", "out", "--work-dir", "work", "--quiet", cwd=tmp_path, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nipype-secondlevel: error: Localizer data folder "
                               f"{tmp_path / 'empty' / 'brainomics_localizer'}")
    assert f"(details: {tmp_path / 'work' / 'crash'}" in lines[0]
    assert "nipype.workflow" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()
    # The failure is not cached: with the data in place the same command succeeds.
    make_localizer_folder(tmp_path / "empty", 3, ["vertical checkerboard",
                                                  "horizontal checkerboard"], shape=(20, 20, 20))
    result = run_cli("localizer", "--n-subjects", "3", "--data-dir", str(tmp_path / "empty"),
                     "--out-dir", "out", "--work-dir", "work", "--quiet",
                     "--mask-strategy", "coverage", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "contrast-verticalVsHorizontal_stat-z_statmap.nii.gz").exists()


def test_graph_writes_png_and_svg(tmp_path, monkeypatch, capsys):
    """... and building the pipeline makes no version check over the network (nipype's
    etelemetry, at its first interface unless NIPYPE_NO_ET is set)."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' is not installed")
    import etelemetry
    from nipype.interfaces.base import BaseInterface

    checks = []
    monkeypatch.delenv("NIPYPE_NO_ET", raising=False)
    monkeypatch.setattr(BaseInterface, "_etelemetry_version_data", None)
    monkeypatch.setattr(etelemetry, "check_available_version", lambda *a, **k: checks.append(a))
    assert main(["graph", "--out-dir", str(tmp_path)]) == 0
    assert checks == []
    for style in ("colored", "hierarchical"):
        assert (tmp_path / f"workflow_{style}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (tmp_path / f"workflow_{style}.svg").read_text()


def test_graph_without_dot_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["graph", "--out-dir", str(tmp_path / "g")]) == 1
    assert "the 'dot' program of Graphviz is not installed" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
