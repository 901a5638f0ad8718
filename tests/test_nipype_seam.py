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


# The demo's shape: q = quick, h = heavy (resource hints); {index: predecessors}.
DEMO = ["q", "q", "q", "q", "q", "h", "h", "q", "q", "q"]
DEMO_DEPS = {1: [0], 2: [1], 3: [0], 4: [3], 5: [1, 3, 4], 6: [1, 5], 7: [2, 6], 8: [4, 7],
             9: [0, 8]}


def check_schedule(groups, waits, kinds, deps, done):
    """Brute force: every node to submit is in one job; a heavy node is alone in its
    job; each node's predecessors ran before it in its job or in a job it waits for."""
    assert sorted(i for g in groups for i in g) == [i for i in range(len(kinds)) if not done[i]]
    job = {i: g for g, members in enumerate(groups) for i in members}

    def before(g):  # jobs that end before job g starts
        seen, todo = set(), list(waits[g])
        while todo:
            w = todo.pop()
            if w not in seen:
                seen.add(w)
                todo += waits[w]
        return seen

    for g, members in enumerate(groups):
        assert len(members) == 1 or all(kinds[i] == "q" for i in members)
        for k, i in enumerate(members):
            for d in deps.get(i, []):
                assert done[d] or d in members[:k] or job[d] in before(g)


@pytest.mark.parametrize("done_nodes", [(), (0, 1)])
def test_quick_nodes_share_jobs_and_heavy_ones_keep_their_own(done_nodes):
    done = [i in done_nodes for i in range(len(DEMO))]
    groups, waits = nipype_seam.job_groups(list(DEMO), DEMO_DEPS, done,
                                           lambda kind: kind == "q")
    check_schedule(groups, waits, DEMO, DEMO_DEPS, done)
    if not done_nodes:  # worked out by hand
        assert groups == [[0, 1, 2, 3, 4], [5], [6], [7, 8, 9]]
        assert waits == {0: [], 1: [0], 2: [0, 1], 3: [0, 2]}
    else:
        assert groups == [[2, 3, 4], [5], [6], [7, 8, 9]]


def test_quick_siblings_waiting_for_the_same_jobs_share_one():
    # a -> estimate (h) -> plan -> chunks (h); a, estimate -> contrast -> threshold
    kinds = ["q", "h", "q", "q", "h", "q"]
    deps = {1: [0], 2: [1], 3: [0, 1], 4: [1, 2], 5: [3]}
    done = [False] * len(kinds)
    groups, waits = nipype_seam.job_groups(kinds, deps, done, lambda kind: kind == "q")
    check_schedule(groups, waits, kinds, deps, done)
    assert groups == [[0], [1], [2, 3, 5], [4]]
