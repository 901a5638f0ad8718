"""BIDS Stats Models: a model's dataset-level node as analyses, against pybids and nilearn.

The models have the shapes of the bids-standard examples (stats-models'
``model-example_smdl.json``, the model zoo's FSL group models): one-sample per
first-level contrast, two groups adjusted for age, a one-way F test on a three-level
factor, a meta-analysis. Each analysis' design and contrast weights are compared with
what pybids builds when called here directly on the same model, and with designs
written by hand from participants.tsv; one OLS fit and one F test with nilearn's
``SecondLevelModel``.
"""

import copy
import itertools
import json
from fractions import Fraction

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_data import SPACE, TASK, make_fitlins_derivatives

from nipype_secondlevel.design.model_analyses import model_analyses
from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.stats.glm import f_contrast, fit_ols, t_contrast


def positive_int(value):
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


#: The options a model's Software block may set in these tests, with their checks.
OPTIONS = {"estimation": str, "correction": str, "n_perm": positive_int}

FIRST_LEVELS = [
    {"Level": "Run", "Name": "run_level", "GroupBy": ["run", "subject"],
     "Model": {"X": ["faces", "houses", 1], "Type": "glm"}, "DummyContrasts": {"Test": "t"}},
    {"Level": "Subject", "Name": "subject_level", "GroupBy": ["subject", "contrast"],
     "Model": {"X": [1], "Type": "meta"}, "DummyContrasts": {"Test": "t"}},
]


def model_file(folder, dataset_node, name="model.json", levels=FIRST_LEVELS, **extra):
    """A BSM 1.0 file: the first-level nodes, then ``dataset_node``, chained by Edges."""
    nodes = [*copy.deepcopy(levels), dataset_node]
    model = {"Name": "test", "BIDSModelVersion": "1.0.0", "Input": {"task": [TASK]},
             "Nodes": nodes,
             "Edges": [{"Source": a["Name"], "Destination": b["Name"]}
                       for a, b in itertools.pairwise(nodes)], **extra}
    path = folder / name
    path.write_text(json.dumps(model, indent=2))
    return path


def dataset_node(x, contrasts=(), transformations=(), model_type="glm", **extra):
    node = {"Level": "Dataset", "Name": "group_level", "GroupBy": ["contrast"],
            "Model": {"X": x, "Type": model_type}, "Contrasts": list(contrasts), **extra}
    if transformations:
        node["Transformations"] = {"Transformer": "pybids-transforms-v1",
                                   "Instructions": list(transformations)}
    return node


def pybids_groups(model_path, participants_root, expected, node="group_level"):
    """What pybids builds, called here directly: {contrast: (X, metadata, contrasts)}.
    Its inputs are the generated maps as written down by bids_data (no file search)."""
    from bids import BIDSLayout
    from bids.modeling import BIDSStatsModelsGraph
    from bids.modeling.statsmodels import ContrastInfo

    inputs = [ContrastInfo(row.condition, [row.condition], [1], "t",
                           {"subject": row.subject[4:], "contrast": row.condition,
                            "task": TASK, "space": SPACE})
              for row in expected.itertuples()]
    graph = BIDSStatsModelsGraph(BIDSLayout(participants_root, validate=False),
                                 str(model_path))
    graph.load_collections(nodes=[node])
    node = graph.get_node(node)
    outputs = node.run(inputs, group_by=node.group_by)
    return {o.entities["contrast"]: (o.X, o.metadata, o.contrasts) for o in outputs}


def weights_of(info, columns):
    """Brute force: each condition's weight at its column (a row per F row)."""
    rows = info.weights if isinstance(info.weights[0], list) else [info.weights]
    out = np.zeros((len(rows), len(columns)))
    for r, row in enumerate(rows):
        for condition, weight in zip(info.conditions, row):
            out[r, list(columns).index(condition)] = float(Fraction(str(weight)))
    return out


def assert_equals_pybids(analyses, reference, expected):
    assert sorted(a.entities["contrast"] for a in analyses) == sorted(reference)
    for analysis in analyses:
        contrast = analysis.entities["contrast"]
        X, metadata, infos = reference[contrast]
        pd.testing.assert_frame_equal(analysis.design, X.astype(float).reset_index(drop=True))
        # Each row is the map of the subject pybids put there.
        want = expected.set_index(["subject", "condition"])["path"]
        paths = [want[f"sub-{s}", contrast] for s in metadata["subject"]]
        assert list(analysis.rows["path"]) == paths
        assert [c.name for c in analysis.contrasts] == [i.name for i in infos]
        for mine, info in zip(analysis.contrasts, infos):
            np.testing.assert_array_equal(mine.weights, weights_of(info, X.columns))
            assert mine.test == info.test


def test_one_sample_per_contrast(bids_derivatives, tmp_path):
    raw, deriv, expected = bids_derivatives
    path = model_file(tmp_path, dataset_node([1], DummyContrasts={"Test": "t"}))
    analyses = model_analyses(path, deriv, raw_dir=raw)
    assert [a.name for a in analyses] == ["contrast-faces", "contrast-houses"]
    assert_equals_pybids(analyses, pybids_groups(path, raw, expected), expected)
    for analysis in analyses:
        assert analysis.design.to_numpy().tolist() == [[1.0]] * 10
        (contrast,) = analysis.contrasts
        assert (contrast.name, contrast.test) == (analysis.entities["contrast"], "t")
        assert analysis.estimation == "ols" and analysis.model_type == "glm"
        assert list(analysis.rows["subject"]) == [f"sub-{s:02d}" for s in range(1, 11)]
        assert "variance_path" not in analysis.rows


@pytest.fixture(scope="module")
def two_groups(bids_derivatives, tmp_path_factory):
    """The model zoo's "two groups adjusted for age": Factor, Demean into age_dm."""
    raw, deriv, _ = bids_derivatives
    node = dataset_node(
        ["group.controls", "group.patients", "age_dm"],
        [{"Name": "patients_vs_controls", "ConditionList": ["group.patients", "group.controls"],
          "Weights": [1, -1], "Test": "t"},
         {"Name": "age", "ConditionList": ["age_dm"], "Weights": ["2/2"], "Test": "t"}],
        [{"Name": "Factor", "Input": ["group"]},
         {"Name": "Demean", "Input": ["age"], "Output": "age_dm"}])
    node["Model"]["Software"] = {"nipype-secondlevel": {"correction": "fdr", "n_perm": 500}}
    path = model_file(tmp_path_factory.mktemp("two_groups"), node)
    return path, model_analyses(path, deriv, raw_dir=raw, options=OPTIONS)


def test_two_groups_with_age(bids_derivatives, two_groups):
    raw, _, expected = bids_derivatives
    path, analyses = two_groups
    assert_equals_pybids(analyses, pybids_groups(path, raw, expected), expected)
    participants = pd.read_csv(raw / "participants.tsv", sep="\t")
    for analysis in analyses:
        # By hand: indicator columns of the groups, age minus its mean over participants.
        by_subject = participants.set_index("participant_id").loc[analysis.rows["subject"]]
        np.testing.assert_array_equal(analysis.design["group.patients"],
                                      (by_subject["group"] == "patients").astype(float))
        np.testing.assert_array_equal(analysis.design["group.controls"],
                                      (by_subject["group"] == "controls").astype(float))
        np.testing.assert_allclose(analysis.design["age_dm"],
                                   by_subject["age"] - participants["age"].mean())
        weights = {c.label: c.weights for c in analysis.contrasts}
        contrast = analysis.entities["contrast"]
        np.testing.assert_array_equal(weights[f"{contrast}PatientsVsControls"], [[-1, 1, 0]])
        np.testing.assert_array_equal(weights[f"{contrast}Age"], [[0, 0, 1]])
        assert analysis.options == {"correction": "fdr", "n_perm": 500}


def masked(paths, mask):
    return np.vstack([nib.load(p).get_fdata()[mask] for p in paths])


def test_ols_fit_of_an_analysis_equals_nilearn(two_groups):
    from nilearn.glm.second_level import SecondLevelModel

    _, analyses = two_groups
    analysis = analyses[0]
    (contrast,) = [c for c in analysis.contrasts if c.label.endswith("PatientsVsControls")]
    model = SecondLevelModel().fit(list(analysis.rows["path"]),
                                   design_matrix=analysis.design)
    t_nilearn = model.compute_contrast(contrast.weights[0], second_level_stat_type="t",
                                       output_type="stat")
    mask = model.masker_.mask_img_.get_fdata() > 0
    X = analysis.design.to_numpy()
    fit = fit_ols(X, masked(analysis.rows["path"], mask))
    _, _, t = t_contrast(X, fit.beta, fit.residual_variance, contrast.weights[0])
    np.testing.assert_allclose(t, t_nilearn.get_fdata()[mask], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def three_sites(bids_derivatives, tmp_path_factory):
    """participants.tsv of another folder, with a three-level column ``site``."""
    raw, _, _ = bids_derivatives
    other = tmp_path_factory.mktemp("sites")
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    table["site"] = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "c"]
    table.to_csv(other / "participants.tsv", sep="\t", index=False)
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "sites", "BIDSVersion": "1.9.0"}))
    return other, table


def test_three_level_f_test(bids_derivatives, three_sites, tmp_path):
    from nilearn.glm.second_level import SecondLevelModel

    _, deriv, expected = bids_derivatives
    other, table = three_sites
    node = dataset_node(
        ["site.a", "site.b", "site.c"],
        [{"Name": "site_effect", "ConditionList": ["site.a", "site.b", "site.c"],
          "Weights": [[1, 0, -1], [0, 1, -1]], "Test": "F"}],
        [{"Name": "Factor", "Input": ["site"]}])
    path = model_file(tmp_path, node)
    analyses = model_analyses(path, deriv, raw_dir=other)
    assert_equals_pybids(analyses, pybids_groups(path, other, expected), expected)
    analysis = analyses[0]
    sites = table.set_index("participant_id").loc[analysis.rows["subject"], "site"]
    np.testing.assert_array_equal(analysis.design.to_numpy(),
                                  pd.get_dummies(sites).to_numpy(dtype=float))
    (contrast,) = analysis.contrasts
    assert contrast.test == "F" and contrast.weights.shape == (2, 3)
    model = SecondLevelModel().fit(list(analysis.rows["path"]), design_matrix=analysis.design)
    f_nilearn = model.compute_contrast(contrast.weights, second_level_stat_type="F",
                                       output_type="stat")
    mask = model.masker_.mask_img_.get_fdata() > 0
    X = analysis.design.to_numpy()
    fit = fit_ols(X, masked(analysis.rows["path"], mask))
    f, q = f_contrast(X, fit.beta, fit.residual_variance, contrast.weights)
    assert q == 2
    np.testing.assert_allclose(f, f_nilearn.get_fdata()[mask], rtol=1e-5, atol=1e-6)


def test_meta_is_fixed_effects_with_the_variances(bids_derivatives, tmp_path):
    raw, deriv, expected = bids_derivatives
    node = dataset_node([1], model_type="meta", DummyContrasts={"Test": "t"})
    analyses = model_analyses(model_file(tmp_path, node), deriv, raw_dir=raw)
    variances = expected.set_index("path")["variance_path"]
    for analysis in analyses:
        assert (analysis.model_type, analysis.estimation) == ("meta", "fixed")
        assert list(analysis.rows["variance_path"]) == list(variances[analysis.rows["path"]])
    node["Model"]["Software"] = {"nipype-secondlevel": {"estimation": "mixed"}}
    (mixed, _) = model_analyses(model_file(tmp_path, node), deriv, raw_dir=raw,
                                options=OPTIONS)
    assert mixed.estimation == "mixed" and mixed.options == {}
    node["Model"]["Software"] = {"nipype-secondlevel": {"estimation": "ols"}}
    with pytest.raises(InputError, match=r"Nodes\[2\]\.Model\.Software\.nipype-secondlevel"
                       r"\.estimation: 'ols' with Type 'meta'"):
        model_analyses(model_file(tmp_path, node), deriv, raw_dir=raw, options=OPTIONS)


def test_a_fitlins_layout_is_found(bids_derivatives, tmp_path):
    raw, deriv, _ = bids_derivatives
    found = make_fitlins_derivatives(deriv, tmp_path / "fitlins")
    node = dataset_node([1], DummyContrasts={"Test": "t"})
    analyses = model_analyses(model_file(tmp_path, node), tmp_path / "fitlins", raw_dir=raw,
                              options=OPTIONS)
    for analysis in analyses:
        contrast = analysis.entities["contrast"]
        assert list(analysis.rows["path"]) == [
            str(found[s, contrast, "effect"]) for s in analysis.rows["subject"]]
    # An edge's Filter keeps the contrasts it names, as FitLins writes them.
    filtered = model_file(tmp_path, node, name="filtered.json")
    model = json.loads(filtered.read_text())
    model["Edges"][1]["Filter"] = {"contrast": ["houses"]}
    filtered.write_text(json.dumps(model))
    (only,) = model_analyses(filtered, tmp_path / "fitlins", raw_dir=raw)
    assert only.entities == {"contrast": "houses"}
    # Without the node giving its inputs, a folder of several nodes is ambiguous.
    alone = model_file(tmp_path, node, name="alone.json", levels=[])
    with pytest.raises(InputError, match="takes the maps of the node before it, which the "
                       "model does not have; the folder holds those of nodes runLevel, "
                       "subjectLevel"):
        model_analyses(alone, tmp_path / "fitlins", raw_dir=raw)


def broken(node_change=None, model_change=None):
    """A two-group model with one thing changed."""
    node = dataset_node([1, "age"], [{"Name": "age", "ConditionList": ["age"],
                                      "Weights": [1], "Test": "t"}])
    if node_change:
        node_change(node)
    levels = copy.deepcopy(FIRST_LEVELS)
    model = {"Name": "bad", "BIDSModelVersion": "1.0.0", "Nodes": [*levels, node]}
    if model_change:
        model_change(model)
    return model


def _set(path, value):
    def change(target):
        *parents, last = path
        for key in parents:
            target = target[key]
        target[last] = value
    return change


INVALID = {
    "schema: a test that does not exist": (
        broken(_set(["Contrasts", 0, "Test"], "T")),
        r"Nodes\[2\]\.Contrasts\[0\]\.Test: Input should be 'pass', 't' or 'F'"),
    "schema: weights of the wrong type": (
        broken(_set(["Contrasts", 0, "Weights"], [None])),
        r"Nodes\[2\]\.Contrasts\[0\]\.Weights\[0\]: "),
    "schema: a missing key": (
        broken(model_change=lambda m: m.pop("BIDSModelVersion")),
        r"BIDSModelVersion: Field required"),
    "an unknown key": (
        broken(_set(["Contrasts", 0, "Conditions"], ["age"])),
        (r"Nodes\[2\]\.Contrasts\[0\]\.Conditions: unknown key \(known here: "
        r"ConditionList, Description, Name, Test, Weights\)")),
    "a column missing from participants.tsv": (
        broken(_set(["Model", "X"], [1, "agee"])),
        (r"Nodes\[2\]\.Model\.X\[1\]: 'agee' is no column of participants.tsv "
        r"\(age, group, sex\)")),
    "a formula naming no column": (
        broken(_set(["Model"], {"X": [1, "age"], "Formula": "1 + agee", "Type": "glm"})),
        (r"Nodes\[2\]\.Model\.Formula: Unable to evaluate factor `agee`\. \[NameError: "
         r"`agee` is not present in the dataset")),
    "a contrast naming no column": (
        broken(_set(["Contrasts", 0, "ConditionList"], ["group"])),
        (r"Nodes\[2\]\.Contrasts\[0\]\.ConditionList\[0\]: 'group' is not a column of the "
        r"design \(intercept, age\)")),
    "weights that do not fit the conditions": (
        broken(_set(["Contrasts", 0, "Weights"], [1, -1])),
        r"Nodes\[2\]\.Contrasts\[0\]\.Weights: 2 weights for 1 conditions"),
    "a fraction that is not one": (
        broken(_set(["Contrasts", 0, "Weights"], ["1/0"])),
        r"Nodes\[2\]\.Contrasts\[0\]\.Weights\[0\]: '1/0' is not a number or a fraction"),
    "t with two rows": (
        broken(_set(["Contrasts", 0], {"Name": "f", "ConditionList": [1, "age"],
                                       "Weights": [[1, 0], [0, 1]], "Test": "t"})),
        r"Nodes\[2\]\.Contrasts\[0\]\.Weights: a t test takes one row of weights, not 2"),
    "an unknown Software option": (
        broken(_set(["Model", "Software"], {"nipype-secondlevel": {"n_perms": 10},
                                            "FSL": {"anything": 1}})),
        (r"Nodes\[2\]\.Model\.Software\.nipype-secondlevel\.n_perms: unknown option \(known: "
        r"correction, estimation, n_perm\)")),
    "a refused Software value": (
        broken(_set(["Model", "Software"], {"nipype-secondlevel": {"n_perm": -1}})),
        (r"Nodes\[2\]\.Model\.Software\.nipype-secondlevel\.n_perm: must be a positive "
        r"integer, got -1")),
    "a transformation pybids lacks": (
        broken(_set(["Transformations"], {"Transformer": "pybids-transforms-v1",
                                          "Instructions": [{"Name": "Frobnicate"}]})),
        (r"Nodes\[2\]\.Transformations\.Instructions\[0\]\.Name: 'Frobnicate' is not a "
        r"transformation of pybids")),
    "a transformation of a column that is not there": (
        broken(_set(["Transformations"], {"Transformer": "pybids-transforms-v1",
                                          "Instructions": [{"Name": "Scale",
                                                            "Input": ["agee"]}]})),
        r"Nodes\[2\]: pybids cannot build the design: No variable named 'agee'"),
    "two nodes of one name": (
        broken(_set(["Name"], "subject_level")),
        r"Nodes\[2\]\.Name: 'subject_level' names two nodes"),
    "an edge to no node": (
        broken(model_change=_set(["Edges"], [{"Source": "subject_level",
                                              "Destination": "group"}])),
        r"Edges\[0\]\.Destination: no node is named 'group'"),
    "no dataset node": (
        broken(_set(["Level"], "Subject")),
        r"Nodes: 0 dataset-level nodes"),
}


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_model_is_one_line_naming_its_json_path(bids_derivatives, tmp_path, case):
    raw, deriv, _ = bids_derivatives
    model, message = INVALID[case]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    with pytest.raises(InputError, match=f"^{path}: {message}") as info:
        model_analyses(path, deriv, raw_dir=raw, options=OPTIONS)
    assert "\n" not in str(info.value)


def test_the_node_to_run_and_the_file_itself(bids_derivatives, tmp_path):
    raw, deriv, _ = bids_derivatives
    path = tmp_path / "model.json"
    path.write_text(json.dumps(broken()))
    with pytest.raises(InputError, match=r"Nodes\[1\]\.Level: 'Subject': nipype-secondlevel "
                       "runs the group level"):
        model_analyses(path, deriv, node="subject_level", raw_dir=raw)
    with pytest.raises(InputError, match=r"Nodes: no node is named 'grp' \(nodes: run_level, "
                       r"subject_level, group_level\)"):
        model_analyses(path, deriv, node="grp", raw_dir=raw)
    path.write_text('{"Name": "x",\n "Nodes": [}')
    with pytest.raises(InputError, match=r"model.json: not valid JSON \(line 2, column 12"):
        model_analyses(path, deriv, raw_dir=raw)
    with pytest.raises(InputError, match=r"missing.json: cannot be read \(No such file"):
        model_analyses(tmp_path / "missing.json", deriv, raw_dir=raw)


def test_participants_values_and_rows_are_checked(bids_derivatives, tmp_path):
    raw, deriv, _ = bids_derivatives
    other = tmp_path / "raw"
    other.mkdir()
    (other / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    path = tmp_path / "model.json"
    path.write_text(json.dumps(broken()))
    table.loc[2, "age"] = np.nan
    table.to_csv(other / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=r"Nodes\[2\]\.Model\.X: column 'age' of sub-03 has "
                       r"no value \(n/a in participants.tsv"):
        model_analyses(path, deriv, raw_dir=other)
    table.drop(index=2).to_csv(other / "participants.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match=r"Nodes\[2\]: participants.tsv "
                       "has no row for sub-03, whose maps are the node's inputs"):
        model_analyses(path, deriv, raw_dir=other)
    # Both contrasts in one analysis with the same design row: one subject, two maps.
    model = broken(_set(["GroupBy"], []))
    path.write_text(json.dumps(model))
    with pytest.raises(InputError, match=r"sub-01 has 2 maps with the same design row; they "
                       r"differ in contrast \(faces, houses\): add it to GroupBy"):
        model_analyses(path, deriv, raw_dir=raw)


def test_group_by_a_participants_column(bids_derivatives, tmp_path):
    raw, deriv, _ = bids_derivatives
    node = dataset_node([1], DummyContrasts={"Test": "t"}, GroupBy=["contrast", "group"])
    analyses = model_analyses(model_file(tmp_path, node), deriv, raw_dir=raw)
    participants = pd.read_csv(raw / "participants.tsv", sep="\t")
    members = participants.groupby("group")["participant_id"].apply(list)
    assert sorted(a.name for a in analyses) == [
        f"contrast-{c}_group-{g}" for c in ("faces", "houses") for g in ("controls", "patients")]
    for analysis in analyses:
        assert list(analysis.rows["subject"]) == members[analysis.entities["group"]]
        assert set(analysis.rows["contrast"]) == {analysis.entities["contrast"]}


def test_the_documented_model_runs(bids_derivatives, tmp_path):
    from conftest import ROOT

    raw, deriv, expected = bids_derivatives
    text = (ROOT / "docs" / "bids_stats_models.md").read_text()
    path = tmp_path / "model-faces_smdl.json"
    path.write_text(text.split("```json\n")[1].split("```")[0])
    analyses = model_analyses(path, deriv, raw_dir=raw, options=OPTIONS)
    assert [a.name for a in analyses] == ["contrast-faces", "contrast-houses"]
    for analysis in analyses:
        assert (analysis.estimation, analysis.options) == ("mixed", {"correction": "fdr"})
        contrast = analysis.entities["contrast"]
        assert [(c.label, c.test) for c in analysis.contrasts] == [
            (f"{contrast}PatientsVsControls", "t"), (f"{contrast}Groups", "F")]
        variances = expected.set_index("path")["variance_path"]
        assert list(analysis.rows["variance_path"]) == list(variances[analysis.rows["path"]])
