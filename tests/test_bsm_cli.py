"""``run --model``: a BIDS Stats Model's group level through the command line.

Each model (shapes of the bids-standard examples: two groups adjusted for age with a
three-level F test; a meta-analysis of one-sample dummy contrasts) gives maps
byte-identical to the equivalent hand-written ``run`` command, whose design file is
written here from participants.tsv; the OLS contrast equals nilearn's
``SecondLevelModel`` on the design pybids builds. Invalid models are one line.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_data import make_fitlins_derivatives
from test_stats_models import FIRST_LEVELS, model_file, pybids_groups

from nipype_secondlevel.cli import main
from nipype_secondlevel.cli_model import resolve_with_model
from nipype_secondlevel.io.errors import InputWarning

SITES = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "c"]


@pytest.fixture(scope="module")
def sites(bids_derivatives, tmp_path_factory):
    """participants.tsv with a three-level column ``site`` (--raw-dir)."""
    raw, _, _ = bids_derivatives
    other = tmp_path_factory.mktemp("sites")
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    table["site"] = SITES
    table.to_csv(other / "participants.tsv", sep="\t", index=False)
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "sites", "BIDSVersion": "1.9.0"}))
    return other, table


def group_node(name, x, contrasts=(), model_type="glm", **extra):
    return {"Level": "Dataset", "Name": name, "GroupBy": ["contrast"],
            "Model": {"X": x, "Type": model_type}, "Contrasts": list(contrasts), **extra}


#: Two groups adjusted for age, and a one-way F test of a three-level factor (site).
GROUPS_AGE = group_node(
    "groups_age", ["group.controls", "group.patients", "site.b", "site.c", "age_dm"],
    [{"Name": "patients_vs_controls", "ConditionList": ["group.patients", "group.controls"],
      "Weights": [1, -1], "Test": "t"},
     {"Name": "site", "ConditionList": ["site.b", "site.c"], "Weights": [[1, 0], [0, 1]],
      "Test": "F"}],
    Transformations={"Transformer": "pybids-transforms-v1", "Instructions": [
        {"Name": "Factor", "Input": ["group", "site"]},
        {"Name": "Demean", "Input": ["age"], "Output": "age_dm"}]})
#: A meta-analysis of each first-level contrast: fixed effects, a dummy contrast "pass".
META = group_node("meta", [1], model_type="meta", DummyContrasts={"Test": "pass"})


def run(folder, *args):
    out = folder / "out"
    assert main(["run", "--out-dir", str(out), "--work-dir", str(folder / "work"),
                 "--atlas", "none", "--quiet", *args]) == 0
    return out


def maps(folder):
    return {p.name: p.read_bytes() for p in folder.glob("*.nii.gz")}


def faces_only(path):
    """The model with its last edge keeping the first-level contrast faces."""
    model = json.loads(path.read_text())
    model["Edges"][-1]["Filter"] = {"contrast": ["faces"]}
    path.write_text(json.dumps(model))
    return path


def test_two_groups_age_and_f_equal_the_hand_written_run(bids_derivatives, sites, tmp_path):
    from nilearn.glm.second_level import SecondLevelModel

    _, deriv, expected = bids_derivatives
    other, table = sites
    path = faces_only(model_file(tmp_path, GROUPS_AGE, levels=FIRST_LEVELS))
    # Two dataset nodes: --node names the one to run (both take subject_level's maps).
    model = json.loads(path.read_text())
    model["Nodes"].append(group_node("one_sample", [1], DummyContrasts={"Test": "t"}))
    model["Edges"].append({"Source": "subject_level", "Destination": "one_sample"})
    path.write_text(json.dumps(model))
    out = run(tmp_path / "model", "--model", str(path), "--node", "groups_age",
              "--bids-dir", str(deriv), "--raw-dir", str(other))
    assert sorted(p.name for p in out.iterdir()) == ["contrast-faces"]
    results = out / "contrast-faces"
    assert json.loads((results / "model_smdl.json").read_text()) == model
    plan = json.loads((results / "plan.json").read_text())
    assert (plan["options"]["model"], plan["options"]["node"]) == (str(path), "groups_age")
    # By hand: the design from participants.tsv, age minus its mean over participants.
    design = pd.DataFrame({
        "group.controls": (table["group"] == "controls").astype(float),
        "group.patients": (table["group"] == "patients").astype(float),
        "site.b": (table["site"] == "b").astype(float),
        "site.c": (table["site"] == "c").astype(float),
        "age_dm": table["age"] - table["age"].mean()})
    design.to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    hand = run(tmp_path / "hand", "--bids-dir", str(deriv), "--raw-dir", str(other),
               "--bids-contrast", "faces", "--design", "file", "--design-file",
               str(tmp_path / "design.tsv"),
               "--contrast", "facesPatientsVsControls=[-1, 1, 0, 0, 0]",
               "--contrast", "facesSite=[[0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]")
    written = maps(results)
    assert len(written) == 12 and written == maps(hand)
    # The subjects with a value at every voxel: all ten faces maps, inside the mask.
    count = nib.load(results / "stat-n_desc-coverage_statmap.nii.gz").get_fdata()
    inside = nib.load(results / "desc-group_mask.nii.gz").get_fdata() > 0
    np.testing.assert_array_equal(count, np.where(inside, len(table), 0))
    # The t map equals nilearn's on the design pybids builds from the same model.
    faces = expected[expected["condition"] == "faces"]
    X, metadata, _ = pybids_groups(path, other, faces, node="groups_age")["faces"]
    paths = faces.set_index("subject").loc[[f"sub-{s}" for s in metadata["subject"]], "path"]
    fit = SecondLevelModel().fit(list(paths), design_matrix=X.astype(float))
    weights = (X.columns == "group.patients").astype(float) - (X.columns == "group.controls")
    t_nilearn = fit.compute_contrast(weights, output_type="stat").get_fdata()
    t = nib.load(results / "contrast-facesPatientsVsControls_stat-t_statmap.nii.gz").get_fdata()
    inside = t != 0
    assert inside.sum() > 100
    np.testing.assert_allclose(t[inside], t_nilearn[inside], rtol=1e-5, atol=1e-6)


def test_meta_pass_is_the_fixed_effects_run(bids_derivatives, tmp_path):
    raw, deriv, _ = bids_derivatives
    node = json.loads(json.dumps(META))
    node["Model"].update({"Options": {"HighPassFilterCutoffHz": 0.008},
                          "Software": {"FSL": {"FLAME": 1}}})
    path = faces_only(model_file(tmp_path, node))
    # (pytest records warnings in this process: their texts are compared; the one-line
    # console form is checked through a subprocess in test_runtime_cli.py)
    with pytest.warns(InputWarning) as record:
        out = run(tmp_path / "model", "--model", str(path), "--bids-dir", str(deriv),
                  "--raw-dir", str(raw))
    assert [str(w.message) for w in record if w.category is InputWarning] == [
        (f"{path}: Nodes[2].Model.Options: ignored (filtering options of a first-level "
         "model; this node is a group level)"),
        (f"{path}: Nodes[2].Model.Software.FSL: ignored (options of another software; "
         "nipype-secondlevel reads the 'nipype-secondlevel' block)"),
        ("node 'meta' (contrast-faces): contrast 'faces' has Test 'pass' (effect and "
         "variance for a next level, which the dataset level has not): computed as a t "
         "test, its effect and variance maps written with it")]
    hand = run(tmp_path / "hand", "--bids-dir", str(deriv), "--raw-dir", str(raw),
               "--bids-contrast", "faces", "--estimation", "fixed",
               "--contrast", "faces=intercept")
    written = maps(out / "contrast-faces")
    assert {"contrast-faces_stat-effect_statmap.nii.gz",
            "contrast-faces_stat-variance_statmap.nii.gz"} <= set(written)
    assert written == maps(hand)


def one_line(capsys, *args):
    assert main(["run", "--quiet", *args]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_invalid_models_are_one_line(bids_derivatives, tmp_path, capsys):
    raw, deriv, _ = bids_derivatives
    common = ("--bids-dir", str(deriv), "--raw-dir", str(raw), "--out-dir",
              str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"))
    bad = model_file(tmp_path, META, name="bad.json")
    model = json.loads(bad.read_text())
    model["Nodes"][-1]["Contrasts"] = [{"Name": "x", "ConditionList": [1], "Weights": [1],
                                       "Test": "T"}]
    bad.write_text(json.dumps(model))
    assert one_line(capsys, "--model", str(bad), *common) == (
        f"nipype-secondlevel: error: {bad}: Nodes[2].Contrasts[0].Test: Input should be "
        "'pass', 't' or 'F'")
    missing = model_file(tmp_path, group_node("g", [1, "agee"]), name="missing.json")
    assert one_line(capsys, "--model", str(missing), *common).startswith(
        f"nipype-secondlevel: error: {missing}: Nodes[2].Model.X[1]: 'agee' is no column of "
        "participants.tsv (age, group, sex)")
    good = model_file(tmp_path, META, name="good.json")
    assert one_line(capsys, "--model", str(good), "--node", "grp", *common) == (
        f"nipype-secondlevel: error: {good}: Nodes: no node is named 'grp' (nodes: "
        "run_level, subject_level, meta)")
    # Options: the model's Software block checked by the spec, the command line's winning.
    model = json.loads(good.read_text())
    model["Nodes"][-1]["Model"]["Software"] = {"nipype-secondlevel": {"n_perm": 0}}
    good.write_text(json.dumps(model))
    assert one_line(capsys, "--model", str(good), *common) == (
        f"nipype-secondlevel: error: {good}: Nodes[2].Model.Software.nipype-secondlevel."
        "n_perm: must be an integer from 1 to 1,000,000, got 0")
    model["Nodes"][-1]["Model"]["Software"] = {"nipype-secondlevel": {"correction": "maxT"}}
    good.write_text(json.dumps(model))
    assert one_line(capsys, "--model", str(good), *common) == (
        f"nipype-secondlevel: error: {good}: node 'meta': Type 'meta' (estimation fixed) "
        "with the options: --correction maxT: permutation tests need --estimation ols: with "
        "fixed effects every map has its own first-level variance, so the maps are not "
        "exchangeable and permuting them gives no valid p; use --correction none, fdr or "
        "bonferroni with --estimation fixed")
    # Checked together before anything runs: the command line's --n-perm goes with the
    # model's correction; a conflict the model's values make names its block.
    values = resolve_with_model({"model": good, "bids_dir": deriv, "n_perm": 99}, "run")
    assert (values["correction"], values["n_perm"]) == ("maxT", 99)
    model["Nodes"][-1]["Model"]["Software"] = {"nipype-secondlevel": {"threshold": 3}}
    good.write_text(json.dumps(model))
    assert one_line(capsys, "--model", str(good), "--correction", "fdr", *common) == (
        f"nipype-secondlevel: error: {good}: Nodes[2].Model.Software.nipype-secondlevel "
        "with the command line: --threshold 3.0: the threshold of --correction fdr is set "
        "by --alpha")
    assert one_line(capsys, "--model", str(good), "--estimation", "ols", *common) == (
        f"nipype-secondlevel: error: --estimation ols: node Nodes[2] of {good} has Type "
        "'meta': a meta-analysis weights the maps by their first-level variances "
        "(estimation 'fixed' or 'mixed')")
    assert one_line(capsys, "--model", str(good), "--design", "paired", *common) == (
        "nipype-secondlevel: error: --design paired: with --model the model decides it "
        "(its Input, GroupBy, Model and Contrasts): change the model file")
    assert one_line(capsys, "--model", str(good), "--inputs", str(good)) == (
        f"nipype-secondlevel: error: --model {good}: needs --bids-dir, the first-level maps "
        "the model's node takes")
    assert one_line(capsys, "--node", "meta", *common) == (
        "nipype-secondlevel: error: --node meta: names a node of --model, which is not given")
    # The model's tables go into the work folder: refused inside the results folder first.
    inside = [*common[:-1], str(tmp_path / "out" / "work")]
    assert one_line(capsys, "--model", str(good), *inside) == (
        f"nipype-secondlevel: error: --work-dir {tmp_path / 'out' / 'work'}: is inside the "
        f"results folder {tmp_path / 'out'}, which holds the results only: choose a work "
        "folder outside it")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_each_analysis_folder_is_checked_as_a_results_folder(tmp_path):
    """The results folder of a model holds one folder per analysis: each is checked as a
    results folder; beside them, anything else (a link named as one included) is not ours."""
    from nipype_secondlevel.io.errors import InputError
    from nipype_secondlevel.io.results_folder import check_results_folder, export_results

    out = tmp_path / "out"
    (tmp_path / "result.txt").write_text("a result")
    export_results(out / "contrast-faces", [(str(tmp_path / "result.txt"), "z.txt")])
    check_results_folder(out, subfolders=["contrast-faces", "contrast-houses"])
    (out / "contrast-faces" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=f"^--out-dir {out / 'contrast-faces'}: holds 1 "
                       r"file\(s\) or folder\(s\) that nipype-secondlevel did not write .* "
                       r"\(notes.txt\)"):
        check_results_folder(out, subfolders=["contrast-faces"])
    (out / "contrast-faces" / "notes.txt").unlink()
    (out / "contrast-houses").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match=r"holds 1 file\(s\) .* \(contrast-houses\)"):
        check_results_folder(out, subfolders=["contrast-faces"])
    # A link where an analysis' results go: refused, even asked to keep what is there.
    with pytest.raises(InputError, match=f"^--out-dir {out}: its contrast-houses is a "
                       "symbolic link, where the results of the analysis contrast-houses go"):
        check_results_folder(out, replace=True, subfolders=["contrast-faces", "contrast-houses"])


def test_the_readme_section_runs(bids_derivatives, tmp_path, monkeypatch):
    """The model and the command of "From a BIDS Stats Model", as written, on a FitLins
    layout of the generated maps; the effect map is the groups' difference of means."""
    import re
    import shlex
    import shutil

    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From a BIDS Stats Model"):]
    section = section[:section.index("\n## ", 1)]
    (model,) = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    raw, deriv, expected = bids_derivatives
    (tmp_path / "raw").mkdir()
    for name in ("participants.tsv", "dataset_description.json"):
        shutil.copy(raw / name, tmp_path / "raw" / name)
    make_fitlins_derivatives(deriv, tmp_path / "raw" / "derivatives" / "fitlins")
    (tmp_path / "model-faces_smdl.json").write_text(model)
    monkeypatch.chdir(tmp_path)
    command = shlex.split(block.replace("\\\n", " "))
    assert command[:3] == ["nipype-secondlevel", "run", "--model"]
    assert main(command[1:]) == 0
    out = tmp_path / "results" / "faces"
    assert sorted(p.name for p in out.iterdir()) == ["contrast-faces", "contrast-houses"]
    for contrast in ("faces", "houses"):
        folder = out / f"contrast-{contrast}"
        for name in ("model_smdl.json", "report.html", "plan.json", "inputs.tsv"):
            assert (folder / name).is_file()
        assert json.loads((folder / "plan.json").read_text())["options"]["correction"] == "fdr"
        rows = expected[expected["condition"] == contrast]
        data = np.stack([nib.load(p).get_fdata() for p in rows["path"]])
        patients = (rows["group"] == "patients").to_numpy()
        effect = nib.load(folder / f"contrast-{contrast}PatientsVsControls_stat-effect_"
                          "statmap.nii.gz").get_fdata()
        inside = effect != 0
        np.testing.assert_allclose(effect[inside], (data[patients].mean(0)
                                                    - data[~patients].mean(0))[inside],
                                   rtol=1e-5, atol=1e-5)
