"""The builder's side of the permutation contract, with a stand-in for
``init_permutation_wf(plan, mem_gb, name)``: every CLI option reaches the plan it is given,
its inputs arrive as the contract says (one item per contrast, blocks in design row
order), and its outputs are drawn, reported with their sidecar's caption and exported
under the naming table's names.

The stand-in writes files with the plain names of the merge node and sidecars; it
computes nothing worth testing. The permutation numerics through ``run`` are in
test_run_permutations.py.
"""

import html
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from group_data import make_group_table
from nipype.interfaces import utility as niu
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from nipype.pipeline import engine as pe

from nipype_secondlevel import cli
from nipype_secondlevel.workflows import group_analysis, init_group_analysis_wf, plan_analysis

INPUTS = ["data_file", "design_matrix", "mask_file", "z_maps"]
OUTPUTS = ["logp_maps", "corrected_logp", "null_distributions", "significant_maps",
           "cluster_tables", "z_thresholds", "plot_titles"]
CAPTION = "stand-in FWE p < 0.05, 12 permutations"


class _StandInInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True)
    design_matrix = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    z_maps = traits.List(File(exists=True), mandatory=True)
    contrast_names = traits.List(traits.Str, mandatory=True)


class _StandInOutputSpec(TraitedSpec):
    logp_maps = traits.List(traits.List(File(exists=True)))
    corrected_logp = traits.List(File(exists=True))
    null_distributions = traits.List(File(exists=True))
    significant_maps = traits.List(File(exists=True))
    cluster_tables = traits.List(File(exists=True))
    z_thresholds = traits.List(traits.Float)
    plot_titles = traits.List(traits.Str)


class StandInPermutations(SimpleInterface):
    """Writes the contract's files: the z map where |z| > 2 as the 'significant' map."""

    input_spec = _StandInInputSpec
    output_spec = _StandInOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd)
        (out / "received.json").write_text(json.dumps(self.inputs.get_traitsfree()))
        results = {name: [] for name in OUTPUTS}
        for label, z_map in zip(self.inputs.contrast_names, self.inputs.z_maps):
            img = nib.load(z_map)
            z = img.get_fdata()
            (out / label).mkdir()  # the merge node writes each contrast in its own folder
            logp = out / label / "logp_max.nii.gz"
            nib.save(nib.Nifti1Image(np.abs(z).astype(np.float32), img.affine), logp)
            significant = out / label / "corrected.nii.gz"
            nib.save(nib.Nifti1Image(np.where(np.abs(z) > 2, z, 0).astype(np.float32),
                                     img.affine), significant)
            (out / label / "corrected.json").write_text(
                json.dumps({"Contrast": label, "Threshold": {
                    "Description": CAPTION, "Correction": "FWER (stand-in)", "Value": 2.0,
                    "TwoSided": True}}))
            nulls = out / label / "nulls.tsv"
            pd.DataFrame({"h0_max_t": np.arange(12.0)}).to_csv(nulls, sep="\t", index=False)
            table = out / label / "corrected_clusters.tsv"
            pd.DataFrame(columns=["Cluster ID", "X", "Y", "Z", "Peak Stat",
                                  "Cluster Size (mm3)"]).to_csv(table, sep="\t", index=False)
            for name, value in (("logp_maps", [str(logp)]), ("corrected_logp", str(logp)),
                                ("null_distributions", str(nulls)),
                                ("significant_maps", str(significant)),
                                ("cluster_tables", str(table)), ("z_thresholds", 2.0),
                                ("plot_titles", f"{label}: {CAPTION}")):
                results[name].append(value)
        self._results.update(results)
        return runtime


@pytest.fixture
def stand_in(monkeypatch):
    """Replace init_permutation_wf in the builder; returns the keyword arguments of each call."""
    calls = []

    def init_permutation_wf(plan, mem_gb=1.0, name="permutation_wf"):
        calls.append((plan, mem_gb))
        workflow = pe.Workflow(name=name)
        # coverage_data: the data with NaN where missing (undefined here: complete data)
        inputnode = pe.Node(niu.IdentityInterface(fields=[*INPUTS, "coverage_data"]),
                            name="inputnode")
        outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUTS), name="outputnode")
        node = pe.Node(StandInPermutations(contrast_names=plan.labels), name="stand_in")
        workflow.connect([(inputnode, node, [(f, f) for f in INPUTS]),
                          (node, outputnode, [(f, f) for f in OUTPUTS])])
        return workflow

    monkeypatch.setattr(group_analysis, "init_permutation_wf", init_permutation_wf)
    return calls


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = make_group_table(tmp_path_factory.mktemp("wiring") / "data", n_subjects=6)
    rows = pd.read_csv(path, sep="\t")
    rows["site"] = [f"site{i % 3}" for i in range(len(rows))]
    rows.to_csv(path, sep="\t", index=False)
    return path


PERMUTATION_OPTIONS = ["--correction", "cluster-mass", "--n-perm", "12", "--n-chunks", "3",
                       "--perm-seed", "7", "--cluster-forming-p", "0.01", "--perm-scheme",
                       "permute", "--alpha", "0.1", "--mem-gb", "0.5"]
EXPECTED_OPTIONS = {"correction": "cluster-mass", "n_perm": 12, "n_chunks": 3, "perm_seed": 7,
                    "cluster_forming_p": 0.01, "perm_scheme": "permute", "alpha": 0.1}


def assert_plan_takes_the_options(plan, mem_gb, scheme="permute", tail="two-sided"):
    """Every permutation option reached the plan, and decided every contrast's test."""
    assert {k: plan.options[k] for k in EXPECTED_OPTIONS} == {
        **EXPECTED_OPTIONS, "perm_scheme": scheme}
    assert mem_gb == 0.5
    for contrast in plan.contrasts:
        test = contrast.permutations
        assert (test.scheme, test.seed, test.tail) == (scheme, 7, tail)
        assert test.n_perm == 12 or test.exhaustive and test.n_perm < 12
        assert len(test.chunks) == 3 and test.cluster_forming[0] == 0.01


def test_run_connects_every_contrast_and_exports_what_comes_back(tmp_path, table, stand_in):
    out = tmp_path / "out"
    code = cli.main(["run", "--inputs", str(table), "--design", "two-sample", "--conditions",
                     "a", "--contrast", "patients - controls", "--contrast", "patients",
                     "--exchangeability-blocks", "site", "--mask-strategy", "coverage",
                     "--quiet", "--out-dir", str(out), "--work-dir", str(tmp_path / "work"),
                     *PERMUTATION_OPTIONS])
    assert code == 0
    ((plan, mem_gb),) = stand_in
    assert_plan_takes_the_options(plan, mem_gb)
    assert {c.permutations.model for c in plan.contrasts} == {"glm"}
    assert [c.specification for c in plan.contrasts] == ["patients - controls", "patients"]
    received = json.loads(next((tmp_path / "work").rglob("received.json")).read_text())
    assert received["contrast_names"] == ["patientsMinusControls", "patients"]
    assert [Path(z).parent.name for z in received["z_maps"]] == ["_contrast0", "_contrast1"]
    # Blocks in design row order, which is the table's (its rows of condition a).
    rows = pd.read_csv(table, sep="\t")
    rows = rows[rows.condition == "a"]
    expected = list(rows.site)
    assert plan.design.blocks == expected
    codes = {site: i for i, site in enumerate(dict.fromkeys(expected))}
    assert plan.contrasts[0].permutations.blocks == [codes[s] for s in expected]
    assert len(np.load(received["data_file"])) == len(expected)
    names = {p.name for p in out.iterdir()}
    for label in ("patientsMinusControls", "patients"):
        assert {f"contrast-{label}_stat-t_desc-maxT_logp.nii.gz",
                f"contrast-{label}_desc-nulls_permutations.tsv",
                f"contrast-{label}_stat-z_desc-clusterMasscorrected_statmap.nii.gz",
                f"contrast-{label}_stat-z_desc-clusterMasscorrected_statmap.json",
                f"contrast-{label}_stat-z_desc-clusterMasscorrected_clusters.tsv",
                # the parametric thresholded outputs are still exported
                f"contrast-{label}_stat-z_desc-thresholded_statmap.nii.gz",
                f"contrast-{label}_stat-z_glassbrain.png"} <= names
    # The report shows the significant map, captioned by its sidecar, never "uncorrected".
    report = (out / "report.html").read_text()
    section = report[report.index('id="results"'):report.index('id="mask"')]
    assert section.count(html.escape(CAPTION)) == 2 and "uncorrected" not in section
    assert "contrast-patients_stat-z_desc-clusterMasscorrected_statmap.nii.gz" in section
    # The glass brain is drawn from the significant map with the stand-in's title.
    from nipype.utils.filemanip import loadpkl

    plot = loadpkl(tmp_path / "work/group_wf/group_analysis_wf/plot/mapflow/_plot1/"
                   "result__plot1.pklz")
    assert plot.inputs["title"] == f"patients: {CAPTION}"
    assert plot.inputs["stat_map"].endswith("patients/corrected.nii.gz")


@pytest.mark.parametrize("command", [["demo", "--n-subjects", "3"],
                                     ["localizer", "--n-subjects", "3"]])
def test_demo_and_localizer_take_the_permutation_options(tmp_path, stand_in, command):
    # (paired differences: sign flips, which ignore the blocks)
    options = [*PERMUTATION_OPTIONS[:-5], "sign-flip", *PERMUTATION_OPTIONS[-4:]]
    args = cli.build_parser().parse_args([*command, "--out-dir", str(tmp_path / "out"),
                                          *options, "--one-sided",
                                          "--exchangeability-blocks", "subject"])
    cli.build_workflow(args)
    ((plan, mem_gb),) = stand_in
    assert_plan_takes_the_options(plan, mem_gb, scheme="sign-flip", tail="positive")
    assert plan.contrasts[0].permutations.model == "paired"
    assert plan.options["exchangeability_blocks"] == "subject"
    assert plan.design.blocks == plan.design.rows["subject"]


@pytest.mark.parametrize(("design", "options", "model"), [
    ("paired", {"conditions": ["a", "b"]}, "paired"),
    ("one-sample", {"conditions": ["a"]}, "one-sample"),
    ("one-sample", {"conditions": ["a"], "covariates": ["age"]}, "glm"),
    ("two-sample", {"conditions": ["a"]}, "glm"),
    ("file", {"design_file": "design"}, "glm"),
])
def test_the_permutation_model_follows_the_design(stand_in, table, tmp_path, design, options,
                                                  model):
    if design == "file":  # the paired design, written as a design file
        paired = plan_analysis(inputs_table=str(table), design="paired", conditions=["a", "b"])
        pd.DataFrame(paired.design.matrix, columns=paired.design.columns).to_csv(
            tmp_path / "design.tsv", sep="\t", index=False)
        options = {"design_file": str(tmp_path / "design.tsv"), "contrasts": ["a_vs_b"]}
    plan = plan_analysis(inputs_table=str(table), design=design, correction="maxT", **options)
    init_group_analysis_wf(plan)
    assert stand_in[-1][0] is plan and plan.contrasts[0].permutations.model == model
