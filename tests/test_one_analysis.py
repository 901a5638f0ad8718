"""One analysis builder for every design and data source: run --design paired equals the
demo byte for byte; the Localizer's OLS and mixed-effects graphs differ only in the
estimator; the options of every command reach the nodes."""

import json

import pandas as pd
import pytest
from group_data import make_group_table

from nipype_secondlevel.cli import main
from nipype_secondlevel.workflows import init_localizer_wf, plan_localizer


def test_run_paired_on_the_demo_table_gives_the_demo_maps_byte_for_byte(demo_run, tmp_path):
    demo_out, demo_work, _ = demo_run
    table = demo_work / "demo_wf" / "simulate" / "inputs.tsv"
    out = tmp_path / "out"
    assert main(["run", "--inputs", str(table), "--design", "paired", "--conditions",
                 "vertical", "horizontal", "--quiet", "--out-dir", str(out),
                 "--work-dir", str(tmp_path / "work")]) == 0
    maps = sorted(p.name for p in demo_out.glob("*.nii.gz") if p.name != "desc-truth_mask.nii.gz")
    assert len(maps) == 8 and {p.name for p in out.glob("*.nii.gz")} == set(maps)  # + stat-n
    for name in maps:
        assert (out / name).read_bytes() == (demo_out / name).read_bytes(), name
        # The sidecars say the same, apart from where the sources were in the work folder.
        ours, theirs = (json.loads(p.with_name(name.replace(".nii.gz", ".json")).read_text())
                        for p in (out / name, demo_out / name))
        ours.pop("SourceFiles", None), theirs.pop("SourceFiles", None)
        assert ours == theirs, name


def flat_graph(workflow):
    """Node name -> (interface class, inputs) and the set of edges with their fields."""
    graph = workflow._create_flat_graph()
    nodes = {n.fullname: (type(n.interface).__name__, n.inputs.get_traitsfree())
             for n in graph.nodes()}
    edges = {(u.fullname, v.fullname, repr(sorted(d["connect"])))
             for u, v, d in graph.edges(data=True)}
    return nodes, edges


def test_localizer_ols_and_mixed_graphs_differ_only_in_the_estimator(tmp_path):
    ols_nodes, ols_edges = flat_graph(init_localizer_wf(str(tmp_path),
                                                        plan_localizer(estimation="ols")))
    mixed_nodes, mixed_edges = flat_graph(init_localizer_wf(
        str(tmp_path), plan_localizer(estimation="mixed")))
    variances = {"localizer_wf.group_analysis_wf.masked_variances",
                 "localizer_wf.group_analysis_wf.stack_masked_variances"}
    estimator = {"localizer_wf.group_analysis_wf.estimate", *variances}
    assert set(mixed_nodes) - set(ols_nodes) == variances
    assert set(ols_nodes) - set(mixed_nodes) == set()
    assert ols_nodes["localizer_wf.group_analysis_wf.estimate"][0] == "EstimateOLS"
    assert mixed_nodes["localizer_wf.group_analysis_wf.estimate"][0] == "EstimateMixedEffects"

    def outside(edges):
        return {e for e in edges if e[0] not in estimator and e[1] not in estimator}

    # The mask's pass also reads the variance maps (voxels NaN in one of them leave it),
    # which the maps' selection gives.
    mask_edge = ("localizer_wf.group_analysis_wf.resample",
                 "localizer_wf.group_analysis_wf.summarize_maps")
    select_edge = ("localizer_wf.group_analysis_wf.select_maps",
                   "localizer_wf.group_analysis_wf.resample")
    # The export names the between-subject variance map too.
    export_edge = ("localizer_wf.group_analysis_wf.outputnode", "localizer_wf.sink")
    ols_only = {e[:2]: e[2] for e in outside(ols_edges) - outside(mixed_edges)}
    mixed_only = {e[:2]: e[2] for e in outside(mixed_edges) - outside(ols_edges)}
    assert set(ols_only) == set(mixed_only) == {mask_edge, export_edge}
    for edge, field in ((mask_edge, "'variance_files'"),
                        (export_edge, "'between_subject_variance'")):
        assert field in mixed_only[edge] and field not in ols_only[edge]
    assert any(e[:2] == select_edge and "'variance_files'" in e[2] for e in ols_edges)
    assert len(outside(ols_edges)) > 20
    # Same interfaces everywhere else; inputs differ only where variances are asked for
    # (one data source either way) and in what records the call and the plan.
    recorded = {"parameters", "graph_dot", "node_folders", "python_call", "run_started"}
    differing = {}
    for name in set(ols_nodes) - estimator:
        (ols_class, ols_inputs), (mixed_class, mixed_inputs) = ols_nodes[name], mixed_nodes[name]
        assert ols_class == mixed_class, name
        keys = {k for k in set(ols_inputs) | set(mixed_inputs)
                if ols_inputs.get(k) != mixed_inputs.get(k)} - recorded
        if keys:
            differing[name] = keys
    assert differing == {"localizer_wf.fetch": {"variances"},
                         "localizer_wf.group_analysis_wf.select_maps": {"variances"},
                         # the plan (estimation) in plan.json, the call in GeneratedBy
                         "localizer_wf.group_analysis_wf.plan": {"plan"},
                         "localizer_wf.sink": {"names"},  # the variance map's name
                         "localizer_wf.dataset_description": {"command"}}
    assert mixed_nodes["localizer_wf.fetch"][1]["variances"] is True


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("one") / "data", n_subjects=6)


def run(tmp_path, *args):
    return main(["run", "--out-dir", str(tmp_path / "out"), "--work-dir",
                 str(tmp_path / "work"), "--mask-strategy", "coverage", "--quiet", *args])


def test_fdr_is_named_in_sidecar_figure_and_report(tmp_path, table):
    assert run(tmp_path, "--inputs", str(table), "--conditions", "a", "--correction", "fdr",
               "--alpha", "0.2") == 0
    out = tmp_path / "out"
    meta = json.loads((out / "contrast-intercept_stat-z_desc-thresholded_statmap.json").read_text())
    assert meta["Threshold"]["HeightControl"] == "fdr" and meta["Threshold"]["Alpha"] == 0.2
    assert meta["Threshold"]["Correction"] == "FDR (Benjamini-Hochberg)"
    report = (out / "report.html").read_text()
    section = report[report.index('id="contrast-intercept"'):report.index('id="mask"')]
    assert "FDR (Benjamini-Hochberg) q &lt; 0.2" in section
    assert "uncorrected" not in section
    from nipype.utils.filemanip import loadpkl

    plot = loadpkl(tmp_path / "work/group_wf/group_analysis_wf/plot/mapflow/_plot0/"
                   "result__plot0.pklz")
    assert plot.inputs["title"].startswith("intercept: FDR q < 0.2 (|z| > ")


@pytest.mark.parametrize("command", [
    ["run", "--design", "one-sample", "--conditions", "a"],
    ["localizer", "--n-subjects", "3"],
])
def test_mixed_effects_with_permutations_is_refused_in_one_line(tmp_path, table, capsys,
                                                                 command):
    args = [*command, "--estimation", "mixed", "--correction", "tfce",
            "--out-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")]
    if command[0] == "run":
        rows = pd.read_csv(table, sep="\t")
        rows["variance_path"] = rows["path"]  # any existing maps: the table is valid
        rows.to_csv(table.parent / "with_variances.tsv", sep="\t", index=False)
        args += ["--inputs", str(table.parent / "with_variances.tsv")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(
        "nipype-secondlevel: error: --correction tfce: permutation tests need --estimation "
        "ols: with mixed effects every map has its own first-level variance")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_exchangeability_blocks_are_checked_before_anything_runs(tmp_path, table, capsys):
    assert run(tmp_path, "--inputs", str(table), "--conditions", "a", "--correction", "maxT",
               "--exchangeability-blocks", "site") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exchangeability-block column 'site' is not a column" in err[0]
    assert run(tmp_path, "--inputs", str(table), "--conditions", "a",
               "--exchangeability-blocks", "group") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("nipype-secondlevel: error: --exchangeability-blocks group: is for "
                   "--correction maxT, cluster-size, cluster-mass, tfce, not --correction none")]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize(("options", "expected"), [
    ([], ("none", 3.1, None)),
    (["--threshold", "2.5"], ("none", 2.5, None)),
    (["--correction", "bonferroni"], ("bonferroni", None, 0.05)),
    (["--alpha", "0.01"], ("fpr", None, 0.01)),
    (["--correction", "fdr", "--alpha", "0.2"], ("fdr", None, 0.2)),
])
def test_correction_and_alpha_reach_the_threshold_node(tmp_path, table, options, expected):
    """One way to ask for each threshold: --correction, then --threshold or --alpha."""
    from nipype.interfaces.base import isdefined

    from nipype_secondlevel import cli

    args = cli.build_parser().parse_args(["run", "--inputs", str(table), "--conditions", "a",
                                          "--out-dir", str(tmp_path), *options])
    threshold = cli.build_workflow(args).get_node("group_analysis_wf.threshold").inputs
    given = (threshold.height_control,
             threshold.threshold if threshold.height_control == "none" else None,
             threshold.alpha if isdefined(threshold.alpha) else None)
    assert given == expected
