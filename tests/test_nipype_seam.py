"""The one module reaching into nipype: version check, batch file names, patches for one run."""

import os

import pytest
from nipype.pipeline.plugins import multiproc, slurmgraph
from nipype.pipeline.plugins.tools import create_pyscript
from slurm_toy import build_toy

from nipype_secondlevel.cli import main
from nipype_secondlevel.runtime import nipype_seam


def nipypes_own():
    return slurmgraph.node_completed_status, multiproc.process_initializer


@pytest.mark.parametrize("plugin", ["SLURMGraph", "MultiProc"])
def test_a_patch_lasts_for_the_run_only_even_when_it_fails(plugin):
    before = nipypes_own()
    with pytest.raises(RuntimeError, match="the run failed"), \
            nipype_seam.patched_for_run(plugin):
        during = nipypes_own()
        raise RuntimeError("the run failed")
    assert nipypes_own() == before
    changed = [d is not b for d, b in zip(during, before, strict=True)]
    assert changed == ([True, False] if plugin == "SLURMGraph" else [False, True])
    with nipype_seam.patched_for_run("Linear"):
        assert nipypes_own() == before


def test_batch_file_names_are_read_as_nipype_writes_them(tmp_path):
    nodes = {n.fullname: n for n in nipype_seam.exec_graph(build_toy(tmp_path)).nodes()}
    for name in ("make_a", "stats.heavy"):
        node = nodes[f"toy.{name}"]
        pyscript = create_pyscript(node)  # what the SLURM plugins write for a job
        folder = os.path.dirname(pyscript)
        pickles = [f for f in os.listdir(folder) if f.startswith("node_")
                   and f.endswith(f"{name.rsplit('.', 1)[-1]}.pklz")]
        assert len(pickles) == 1
        assert nipype_seam.batch_key_of(pickles[0], "node_", ".pklz") == \
            nipype_seam.batch_key(node)
        script = os.path.join(folder, "batchscript_" + os.path.basename(pyscript)[:-3] + ".sh")
        assert nipype_seam.node_pickle_of_script(script) == os.path.join(folder, pickles[0])
        assert nipype_seam.node_of_pickle(os.path.join(folder, pickles[0])).fullname == \
            node.fullname
    assert nipype_seam.batch_key_of("node_20250101_1200_x.pklz", "node_", ".pklz") is None


def test_an_untested_nipype_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    import nipype

    monkeypatch.setattr(nipype, "__version__", "1.12.0")
    with pytest.raises(nipype_seam.UntestedNipype, match=r"nipype 1\.12\.0 .* 1\.11\.x"):
        nipype_seam.check_nipype_version()
    code = main(["demo", "--n-subjects", "4", "--quiet", "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "nipype 1.12.0 is installed" in err and nipype_seam.ALLOW_UNTESTED in err
    assert not list((tmp_path / "work").glob("demo_wf/*/result_*.pklz"))  # no node ran
    monkeypatch.setenv(nipype_seam.ALLOW_UNTESTED, "1")
    nipype_seam.check_nipype_version()
