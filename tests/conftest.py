"""Shared fixtures: a simulated sample and one demo run, made once per session."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("NIPYPE_NO_ET", "1")


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """The simulated 16-subject paired sample, written by the Simulate interface."""
    from nipype_secondlevel.interfaces import SimulatePaired

    folder = tmp_path_factory.mktemp("simulated")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = SimulatePaired(n_subjects=16, seed=3).run()
    finally:
        os.chdir(cwd)
    return result.outputs


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One cold run of the demo workflow (Linear): (out_dir, work_dir, summary)."""
    from nipype_secondlevel.execution import run_workflow
    from nipype_secondlevel.workflows import init_demo_wf

    base = tmp_path_factory.mktemp("demo")
    out_dir, work_dir = base / "out", base / "work"
    summary = run_workflow(init_demo_wf(str(out_dir)), work_dir, progress=False)
    return out_dir, work_dir, summary


def run_in(folder, interface):
    """Run a Nipype interface with ``folder`` as working directory."""
    cwd = os.getcwd()
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    try:
        return interface.run().outputs
    finally:
        os.chdir(cwd)
