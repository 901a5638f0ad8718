"""The plan: every decision made once before the run (design, contrasts, permutation
tests), written as plan.json; names given at the sink from one table."""

import ast
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from group_data import make_group_table
from scipy import stats

from nipype_secondlevel.cli import main
from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.stats import permutation as perm
from nipype_secondlevel.workflows import Plan, plan_analysis


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("plan") / "data", n_subjects=7)


def test_the_plan_holds_the_design_and_the_weights(table):
    """Against a design built here from the table: sorted group indicators, centred age."""
    plan = plan_analysis(inputs_table=table, design="two-sample", conditions=["b"],
                         covariates=["age"], contrasts=["patients - controls", "age"])
    rows = pd.read_csv(table, sep="\t")
    rows = rows[rows.condition == "b"].reset_index(drop=True)
    expected = np.column_stack([rows.group == "controls", rows.group == "patients",
                                rows.age - rows.age.mean()]).astype(float)
    assert plan.design.columns == ["controls", "patients", "age"]
    np.testing.assert_allclose(plan.design.matrix, expected, atol=1e-12)
    assert plan.design.paths == [str(table.parent / p) for p in rows.path]
    assert plan.design.rows["subject"] == list(rows.subject)
    assert [(c.label, c.kind, c.weights) for c in plan.contrasts] == [
        ("patientsMinusControls", "t", [[-1.0, 1.0, 0.0]]), ("age", "t", [[0.0, 0.0, 1.0]])]
    assert plan.options["covariates"] == ["age"] and plan.options["threshold"] == 3.1
    assert plan.made_by.startswith("plan_analysis(inputs_table=")
    text = plan.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in plan.json"))
    assert Plan.from_json(text) == plan


def test_a_column_name_gives_nilearns_weights():
    """A bare column is weighted without importing nilearn.glm, as nilearn weights it."""
    from nilearn.glm import expression_to_contrast_vector

    from nipype_secondlevel.design.contrasts import contrast_weights

    columns = ["a_vs_b", "s01", "s02", "age"]
    for column in columns:
        np.testing.assert_array_equal(contrast_weights(column, columns),
                                      expression_to_contrast_vector(column, columns))


def test_the_default_contrast_is_chosen_once(table):
    """Each design's own contrast, from its columns (the only place it is chosen)."""
    cases = {"one-sample": ("intercept", [[1.0]]),
             "paired": ("aVsB", [[1.0] + [0.0] * 7]),
             "two-sample": ("controlsMinusPatients", [[1.0, -1.0]])}
    for design, expected in cases.items():
        conditions = ["a", "b"] if design == "paired" else ["a"]
        plan = plan_analysis(inputs_table=table, design=design, conditions=conditions)
        assert [(c.label, c.weights) for c in plan.contrasts] == [expected], design


@pytest.mark.parametrize(("n_perm", "exhaustive"), [(100, False), (200, True)])
def test_permutations_are_decided_in_the_plan(table, n_perm, exhaustive):
    """7 one-sample maps: 2^7 = 128 sign flips, all of them when --n-perm allows; chunks
    covering every pattern once; the cluster-forming t of scipy."""
    plan = plan_analysis(inputs_table=table, conditions=["a"], correction="cluster-size",
                         n_perm=n_perm, n_chunks=3, cluster_forming_p=0.01, perm_seed=4)
    (test,) = [c.permutations for c in plan.contrasts]
    assert (test.model, test.scheme, test.exhaustive) == ("one-sample", "sign-flip", exhaustive)
    assert test.n_perm == (128 if exhaustive else n_perm) and test.seed == 4
    bounds = [b for chunk in test.chunks for b in chunk]
    assert bounds[0] == 0 and bounds[-1] == test.n_perm and len(test.chunks) == 3
    assert all(a < b for a, b in test.chunks)
    assert all(stop == start for (_, stop), (start, _) in zip(test.chunks, test.chunks[1:]))
    assert test.cluster_forming[1] == pytest.approx(stats.t.isf(0.005, 6))


@pytest.mark.parametrize(("correction", "one_sided", "n_perm"),
                         [("cluster-size", False, 100), ("tfce", True, 100),
                          ("cluster-mass", False, 200), ("tfce", True, 200),
                          ("maxT", False, 100)])
def test_cluster_and_tfce_chunks_compute_as_many_patterns(table, correction, one_sided,
                                                          n_perm):
    """Cluster and TFCE chunks compute each distinct pattern once (a sign pattern and its
    negation are one on both tails): the plan's chunks hold as many first occurrences as
    each other, within one, counted here with a set of the patterns seen; max-T computes
    every index, as do the chunks of a plan without repeats (every sign flip, one
    tail): chunks of equal length."""
    plan = plan_analysis(inputs_table=table, conditions=["a"], correction=correction,
                         one_sided=one_sided, n_perm=n_perm, n_chunks=3, perm_seed=4)
    (test,) = [c.permutations for c in plan.contrasts]
    starts, stops = zip(*test.chunks)
    assert starts[0] == 0 and stops[-1] == test.n_perm and starts[1:] == stops[:-1]
    assert len(test.chunks) == 3 and all(a < b for a, b in test.chunks)
    lengths = [b - a for a, b in test.chunks]
    if correction == "maxT":
        assert max(lengths) - min(lengths) <= 1
        return
    seen, first = set(), []
    for pattern in perm.plan_patterns(test.patterns(), 0, test.n_perm):
        key = tuple(pattern)
        if not one_sided:
            key = max(key, tuple(-pattern))
        first.append(key not in seen)
        seen.add(key)
    computed = [sum(first[a:b]) for a, b in test.chunks]
    assert sum(computed) == len(seen)
    assert max(computed) - min(computed) <= 1
    # with repeats, equal lengths would not have been equal work
    assert (max(lengths) - min(lengths) > 1) == (len(seen) < test.n_perm)


def test_a_paired_test_permutes_the_pairs_within_blocks(table):
    """Paired: each subject's two rows, 2^n sign flips; two samples: the distinct
    rearrangements within blocks."""
    plan = plan_analysis(inputs_table=table, design="paired", conditions=["a", "b"],
                         correction="maxT", perm_scheme="sign-flip")
    (test,) = [c.permutations for c in plan.contrasts]
    rows = pd.read_csv(table, sep="\t")
    first = [i for i, r in rows.iterrows() if r.condition == "a"]
    second = [i for i, r in rows.iterrows() if r.condition == "b"]
    assert test.model == "paired" and test.pairs == [first, second]
    assert (test.n_subjects, test.n_perm, test.exhaustive) == (7, 128, True)
    # Two samples, permuted within two sites holding both groups: 4! x 3! orders.
    rows["site"] = ["x" if int(s[1:]) < 4 else "y" for s in rows.subject]
    rows.to_csv(table.parent / "sites.tsv", sep="\t", index=False)
    plan = plan_analysis(inputs_table=table.parent / "sites.tsv", design="two-sample",
                         conditions=["a"], correction="maxT", exchangeability_blocks="site",
                         n_perm=10 ** 6)
    (test,) = [c.permutations for c in plan.contrasts]
    # the distinct rearrangements of the group labels within each site (n! / prod c_k!)
    sites = rows.query("condition == 'a'").groupby("site").group
    distinct = math.prod(math.factorial(len(g)) // math.prod(
        math.factorial(c) for c in g.value_counts()) for _, g in sites)
    assert (test.model, test.scheme, test.exhaustive) == ("glm", "permute", True)
    assert test.n_perm == distinct == 18
    assert test.blocks == [0 if s == "x" else 1 for s in rows.query("condition == 'a'").site]


def test_what_the_plan_refuses_is_refused_before_any_node(table, tmp_path, capsys):
    with pytest.raises(InputError, match=r"a paired test weights the condition column"):
        plan_analysis(inputs_table=table, design="paired", conditions=["a", "b"],
                      contrasts=["s00 - s01"], correction="maxT")
    code = main(["run", "--inputs", str(table), "--design", "paired", "--conditions", "a",
                 "b", "--contrast", "s00 - s01", "--correction", "tfce", "--out-dir",
                 str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "a paired test weights the condition column" in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_run_writes_plan_json_with_the_options_given(table, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--inputs", str(table), "--conditions", "a", "--threshold", "2.5",
                 "--atlas", "none", "--quiet", "--out-dir", str(out), "--work-dir",
                 str(tmp_path / "work")]) == 0
    assert f"Cache in {tmp_path / 'work'}" in capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    assert plan["options"]["threshold"] == 2.5 and plan["options"]["atlases"] == []
    assert plan["options"]["correction"] == "none" and plan["options"]["alpha"] is None
    assert plan["options"]["inputs_table"] == str(table)
    design = pd.read_csv(out / "design.tsv", sep="\t")
    assert ["subject", "condition", "group", *plan["design"]["columns"]] == list(design.columns)
    np.testing.assert_array_equal(design["intercept"], np.ravel(plan["design"]["matrix"]))
    assert [c["label"] for c in plan["contrasts"]] == ["intercept"]


def test_plugin_args_reach_the_run(table, tmp_path, monkeypatch):
    """--plugin-args: a JSON object passed through to the run as nipype's plugin_args."""
    from nipype_secondlevel.runtime import execution

    seen = {}

    def run_workflow(workflow, work_dir, **kwargs):
        seen.update(kwargs)
        return execution.RunSummary()

    monkeypatch.setattr(execution, "run_workflow", run_workflow)
    assert main(["run", "--inputs", str(table), "--conditions", "a", "--plugin", "MultiProc",
                 "--plugin-args", '{"n_procs": 2, "maxtasksperchild": 1}', "--quiet",
                 "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")]) == 0
    assert seen["plugin"] == "MultiProc"
    assert seen["plugin_args"] == {"n_procs": 2, "maxtasksperchild": 1}


def test_no_output_name_is_written_outside_the_naming_table():
    """No f-string of the package spells a BIDS name (``_statmap``, ``_logp``, ``desc-``)
    outside io/naming.py: the sink names every file."""
    package = ROOT / "nipype_secondlevel"
    found = []
    for path in package.rglob("*.py"):
        if path.name == "naming.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if any(part in text for part in ("_statmap", "_logp", "desc-", "_glassbrain")):
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_the_sink_refuses_a_file_it_has_no_name_for(tmp_path):
    from conftest import run_in

    from nipype_secondlevel.interfaces import DerivativesSink

    (tmp_path / "z.nii.gz").write_bytes(b"z")
    (tmp_path / "odd.nii.gz").write_bytes(b"odd")
    sink = DerivativesSink(names={"maps": [{"z.nii.gz": "contrast-a_stat-z_statmap.nii.gz"}]},
                           out_dir=str(tmp_path / "out"))
    sink.inputs.maps = [[str(tmp_path / "z.nii.gz"), str(tmp_path / "odd.nii.gz")]]
    with pytest.raises(ValueError, match=r"maps: no exported name for .*odd.nii.gz"):
        run_in(tmp_path / "sink", sink)
    assert not (tmp_path / "out" / "contrast-a_stat-z_statmap.nii.gz").exists()
    sink.inputs.maps = [[str(tmp_path / "z.nii.gz")]]
    run_in(tmp_path / "sink", sink)
    assert (tmp_path / "out" / "contrast-a_stat-z_statmap.nii.gz").read_bytes() == b"z"
