"""The defaults of a run on this machine (the real ones: conftest makes Linear the default
of in-process runs): MultiProc and one permutation chunk per process
on more than one CPU when each has a second of work, Linear and one chunk on one (the
chunking changes no result: tests/test_inference.py compares 1 and 2 chunks, bit for bit)."""

import json
from itertools import pairwise

import pytest

from nipype_secondlevel.cli import build_parser, build_workflow
from nipype_secondlevel.runtime import execution
from nipype_secondlevel.runtime.execution import local_plugin  # before conftest's Linear
from nipype_secondlevel.workflows import plan_demo


def chunk_items(monkeypatch, cpus, *options, test=("--correction", "tfce", "--n-subjects",
                                                  "12", "--n-perm", "4000")):
    monkeypatch.setattr(execution, "local_plugin", local_plugin)
    monkeypatch.setattr(execution, "usable_cpus", lambda: cpus)
    argv = ["demo", *test, *options]
    args = build_parser().parse_args(argv)
    args.argv = argv
    workflow = build_workflow(args)
    chunks = workflow.get_node("group_analysis_wf.permutation_wf.chunks")
    items = [(item["start"], item["stop"]) for item in chunks.inputs.item]
    plan = json.loads(workflow.get_node("group_analysis_wf.plan").inputs.plan)
    assert plan["options"]["n_chunks"] == len(items)  # the report says how many
    # and the plan's provenance, run again, makes the same chunks
    again = eval(plan["made_by"], {"plan_demo": plan_demo})
    assert again.contrasts[0].permutations.chunks == [list(item) for item in items]
    return items


@pytest.mark.parametrize(("cpus", "options", "plugin", "n_chunks"), [
    (1, [], "LinearPlugin", 1),
    (4, [], "MultiProcPlugin", 2),
    (4, ["--n-procs", "3"], "MultiProcPlugin", 3),
    (2, ["--n-procs", "3"], "MultiProcPlugin", 2),
    (4, ["--plugin", "Linear"], "LinearPlugin", 1),
    (4, ["--n-chunks", "1"], "MultiProcPlugin", 1),
])
def test_default_plugin_and_chunks_follow_the_cpus(monkeypatch, cpus, options, plugin,
                                                   n_chunks):
    # TFCE of 4,000 sign flips on the demo's grid: seconds of work, worth every process
    items = chunk_items(monkeypatch, cpus, *options)
    assert len(items) == n_chunks
    assert items[0][0] == 0 and items[-1][1] == 4000
    assert all(a[1] == b[0] for a, b in pairwise(items))
    given = options[1] if options[:1] == ["--plugin"] else "auto"
    assert execution.plugin_class(given).__name__ == plugin


@pytest.mark.parametrize(("test", "expected"), [
    # the demo's max-T test: 10,000 sign flips of 16 subjects, a quarter of a second of
    # work, less than a second process's start (numba's kernels loaded, the data read)
    (["--correction", "maxT", "--n-perm", "10000"], [(0, 10000)]),
    # 200 subjects: seconds of work, one chunk per process
    (["--correction", "maxT", "--n-perm", "10000", "--n-subjects", "200"],
     [(0, 5000), (5000, 10000)]),
    # TFCE of 1,000 sign flips: about a second, one chunk
    (["--correction", "tfce", "--n-perm", "1000"], [(0, 1000)]),
    # given, whatever the work
    (["--correction", "maxT", "--n-perm", "100", "--n-chunks", "2"], [(0, 50), (50, 100)]),
])
def test_a_short_test_is_one_chunk_unless_chunks_are_given(monkeypatch, test, expected):
    assert chunk_items(monkeypatch, 4, test=test) == expected


def test_null_maxima_are_bit_identical_whatever_the_chunking():
    # what the default chunks change: every pattern's cluster and TFCE maxima, and the
    # p values, are the same bits with 1, 2 or 3 chunks
    import numpy as np
    from group_data import masked_noise

    from nipype_secondlevel.stats import permutation as perm

    Y, mask = masked_noise(9, (6, 6, 5), 1, 10, 1.0, seed=0)
    options = perm.PermutationOptions(cluster_threshold=1.5, tfce=True)
    results = [perm.permutation_test(Y, mask=mask, n_perm=120, n_chunks=k, options=options)
               for k in (1, 2, 3)]
    for other in results[1:]:
        for name in ("null_max", "null_cluster_size", "null_cluster_mass", "null_tfce",
                     "logp_uncorrected", "logp_tfce"):
            np.testing.assert_array_equal(getattr(other, name), getattr(results[0], name))
