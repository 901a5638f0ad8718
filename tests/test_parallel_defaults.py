"""The defaults of a run on this machine (the real ones: conftest makes Linear the default
of in-process runs): MultiProc and one permutation chunk per process
on more than one CPU, Linear and one chunk on one (the chunking changes no result:
tests/test_inference.py compares 1 and 2 chunks, bit for bit)."""

import pytest

from nipype_secondlevel.cli import build_parser, build_workflow
from nipype_secondlevel.runtime import execution
from nipype_secondlevel.runtime.execution import local_plugin  # before conftest's Linear


def chunk_items(monkeypatch, cpus, *options):
    monkeypatch.setattr(execution, "local_plugin", local_plugin)
    monkeypatch.setattr(execution, "usable_cpus", lambda: cpus)
    argv = ["demo", "--n-subjects", "6", "--correction", "maxT", "--n-perm", "100", *options]
    args = build_parser().parse_args(argv)
    args.argv = argv
    workflow = build_workflow(args)
    chunks = workflow.get_node("group_analysis_wf.permutation_wf.chunks")
    return [(item["start"], item["stop"]) for item in chunks.inputs.item]


@pytest.mark.parametrize(("cpus", "options", "plugin", "expected"), [
    (1, [], "LinearPlugin", [(0, 64)]),
    (4, [], "MultiProcPlugin", [(0, 32), (32, 64)]),
    (4, ["--n-procs", "3"], "MultiProcPlugin", [(0, 21), (21, 43), (43, 64)]),
    (2, ["--n-procs", "3"], "MultiProcPlugin", [(0, 32), (32, 64)]),
    (4, ["--plugin", "Linear"], "LinearPlugin", [(0, 64)]),
    (4, ["--n-chunks", "1"], "MultiProcPlugin", [(0, 64)]),
])
def test_default_plugin_and_chunks_follow_the_cpus(monkeypatch, cpus, options, plugin,
                                                   expected):
    # 6 subjects: all 2^6 = 64 sign flips
    assert chunk_items(monkeypatch, cpus, *options) == expected
    given = options[1] if options[:1] == ["--plugin"] else "auto"
    assert execution.plugin_class(given).__name__ == plugin


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
