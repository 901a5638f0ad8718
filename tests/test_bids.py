"""BIDS derivatives in (inputs tables found by pybids) and out (our results folder)."""

import json
import shutil

import pandas as pd
import pytest
from bids_data import SPACE, TASK, make_bids_derivatives

from nipype_secondlevel.design.bids import bids_inputs_table
from nipype_secondlevel.design.tables import read_inputs_table
from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.io.tables import write_inputs_table

COLUMNS = ["subject", "condition", "group", "path", "variance_path", "age"]


def one_line_error(match, call, *args, **kwargs):
    with pytest.raises(InputError, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_table_equals_the_generated_one(bids_derivatives):
    raw, deriv, expected = bids_derivatives
    table = bids_inputs_table(deriv, {"task": TASK, "space": SPACE}, variances=True,
                              raw_dir=raw)
    assert list(table.columns) == [*COLUMNS, "sex"]
    pd.testing.assert_frame_equal(table[COLUMNS], expected[COLUMNS], check_dtype=False)
    assert table["sex"].isna().all()  # "n/a" in participants.tsv
    assert len(table) == 20 and set(table["condition"]) == {"faces", "houses"}


def test_one_contrast_and_no_variances(bids_derivatives):
    raw, deriv, expected = bids_derivatives
    table = bids_inputs_table(deriv, {"contrast": "houses"}, raw_dir=raw)
    want = expected[expected["condition"] == "houses"].reset_index(drop=True)
    assert "variance_path" not in table.columns
    assert list(table["path"]) == list(want["path"])
    assert list(table["condition"]) == ["houses"] * 10
    # A list of values accepts any of them.
    both = bids_inputs_table(deriv, {"contrast": ["faces", "houses"]}, raw_dir=raw)
    assert len(both) == 20


def test_participants_at_the_derivatives_root_and_another_group_column(tmp_path):
    _, deriv, expected = make_bids_derivatives(tmp_path, n_subjects=4, contrasts=("faces",),
                                               participants_at="derivatives")
    table = bids_inputs_table(deriv)
    assert list(table["group"]) == list(expected["group"])
    assert list(table["age"]) == list(expected["age"])
    participants = pd.read_csv(deriv / "participants.tsv", sep="\t")
    participants.rename(columns={"group": "diagnosis"}).to_csv(
        deriv / "participants.tsv", sep="\t", index=False)
    renamed = bids_inputs_table(deriv, group_column="diagnosis")
    assert list(renamed["group"]) == list(expected["group"])
    assert "diagnosis" not in renamed.columns
    one_line_error(r"participants.tsv .*: has no column 'cohort' \(group column\)",
                   bids_inputs_table, deriv, group_column="cohort")


def test_sessions_are_the_conditions_when_they_vary(tmp_path):
    raw, deriv, expected = make_bids_derivatives(tmp_path, n_subjects=3, contrasts=("faces",),
                                                 sessions=("1", "2"))
    table = bids_inputs_table(deriv, {"task": TASK}, variances=True, raw_dir=raw)
    pd.testing.assert_frame_equal(table[COLUMNS], expected[COLUMNS], check_dtype=False)
    assert set(table["condition"]) == {"session1", "session2"}
    # One session: one map per subject, the condition is the contrast.
    first = bids_inputs_table(deriv, {"session": "1"}, raw_dir=raw)
    assert list(first["condition"]) == ["faces"] * 3
    assert all("_ses-1_" in p for p in first["path"])


def test_no_match_lists_what_was_found(bids_derivatives):
    _, deriv, _ = bids_derivatives
    message = one_line_error(r"no stat-effect statmap matches task=nback, contrast=faces",
                             bids_inputs_table, deriv, {"task": "nback", "contrast": "faces"})
    assert "contrast faces, houses" in message and "task loc" in message
    assert f"space {SPACE}" in message and "stat effect, t, variance, z" in message
    assert "subject sub-01, sub-02, sub-03, sub-04, sub-05, sub-06, sub-07, sub-08, ... (10 " \
        "values)" in message
    one_line_error(r"'tsk' is not a recognized entity.*entities: .*task",
                   bids_inputs_table, deriv, {"tsk": "loc"})
    one_line_error(r"BIDS derivatives folder .*nowhere: not found",
                   bids_inputs_table, deriv / "nowhere")


def test_two_maps_for_one_subject_and_condition(tmp_path, bids_derivatives):
    _, deriv, expected = bids_derivatives
    copy = tmp_path / "deriv"
    shutil.copytree(deriv, copy)
    first = copy / expected["path"][0].split("firstlevel/")[1]
    other = first.with_name(first.name.replace(SPACE, "MNI152NLin6Asym"))
    shutil.copyfile(first, other)
    one_line_error(r"subject sub-01, condition faces has 2 maps \(.*\); they differ in space "
                   rf"\({SPACE}, MNI152NLin6Asym\): filter on it", bids_inputs_table, copy)
    assert len(bids_inputs_table(copy, {"space": SPACE})) == 20


def test_contrasts_and_sessions(tmp_path):
    """With several contrasts, contrast is the condition; sessions then make duplicates."""
    _, deriv, _ = make_bids_derivatives(tmp_path, n_subjects=2, sessions=("1", "2"))
    one_line_error(r"subject sub-01, condition faces has 2 maps \(sub-01_ses-1_.*, sub-01_ses-2"
                   r"_.*\); they differ in session \(1, 2\): filter on it$",
                   bids_inputs_table, deriv)
    table = bids_inputs_table(deriv, {"session": "2"})
    assert set(table["condition"]) == {"faces", "houses"}
    one_line_error(r"condition entity 'run' is not in the maps' names",
                   bids_inputs_table, deriv, condition_entity="run")


def test_missing_variance_or_participant(tmp_path, bids_derivatives):
    raw, deriv, expected = bids_derivatives
    copy = tmp_path / "deriv"
    shutil.copytree(deriv, copy)
    variance = copy / expected["variance_path"][3].split("firstlevel/")[1]
    variance.unlink()
    one_line_error(rf"no stat-variance map beside {variance.name.replace('variance', 'effect')}"
                   r" \(1 effect map\(s\) without one\)",
                   bids_inputs_table, copy, variances=True)
    assert len(bids_inputs_table(copy)) == 20  # not needed without variances
    participants = pd.read_csv(raw / "participants.tsv", sep="\t")
    raw_copy = tmp_path / "raw"
    raw_copy.mkdir()
    participants[participants["participant_id"] != "sub-04"].to_csv(
        raw_copy / "participants.tsv", sep="\t", index=False)
    one_line_error(r"participants.tsv .*: has no row for sub-04",
                   bids_inputs_table, copy, raw_dir=raw_copy)


def test_written_table_reads_back_as_the_inputs_table(tmp_path, bids_derivatives):
    raw, deriv, expected = bids_derivatives
    table = bids_inputs_table(deriv, {"task": TASK}, variances=True, raw_dir=raw)
    source = {"BIDSDir": str(deriv), "Filters": {"task": TASK}}
    path = write_inputs_table(table, tmp_path / "inputs.tsv", source)
    again = read_inputs_table(path, covariates=["age"], variances=True)
    pd.testing.assert_frame_equal(again[COLUMNS], expected[COLUMNS], check_dtype=False)
    meta = json.loads((tmp_path / "inputs.json").read_text())
    assert meta["Source"] == source and meta["GeneratedBy"][0]["Name"] == "nipype-secondlevel"
    assert not list(tmp_path.glob(".*part*"))


def test_results_folder_is_a_derivatives_dataset_for_pybids(demo_run, tmp_path):
    """Our results folder, with its dataset_description.json, indexed by pybids as a
    derivatives dataset: every file found by the entities of its name."""
    from bids import BIDSLayout
    from bids.layout import Query

    from nipype_secondlevel import __version__
    from nipype_secondlevel.io.derivatives import write_dataset_description

    out_dir, _, _ = demo_run
    results = tmp_path / "results"
    shutil.copytree(out_dir, results)
    command = "nipype-secondlevel demo --out-dir results"
    write_dataset_description(results, command, code_url="https://example.org/code")
    description = json.loads((results / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"] == [{"Name": "nipype-secondlevel", "Version": __version__,
                                           "Description": command,
                                           "CodeURL": "https://example.org/code"}]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}')
    # The statistical entities as FitLins declares them to pybids.
    fitlins_entities = {"name": "fitlins", "entities": [
        {"name": "contrast", "pattern": "[_/\\\\]+contrast-([a-zA-Z0-9]+)"},
        {"name": "stat", "pattern": "[_/\\\\]+stat-([a-zA-Z0-9]+)"}]}
    layout = BIDSLayout(raw, validate=False)
    layout.add_derivatives(results, config=["bids", "derivatives", fitlins_entities])
    assert layout.derivatives[results.name].description == description
    names = {"contrast": "contrast", "stat": "stat", "desc": "desc"}
    # pybids skips hidden files such as our results-folder manifest, as BIDS allows.
    assert (results / ".nipype-secondlevel-results.json").is_file()
    files = sorted(p for p in results.iterdir()
                   if p.name != "dataset_description.json" and not p.name.startswith("."))
    statmaps = [p for p in files if p.name.endswith("_statmap.nii.gz")]
    assert len(statmaps) == 7  # z, t, p, effect, variance, the thresholded z and stat-n
    for path in files:
        stem, _, extension = path.name.partition(".")
        *pairs, suffix = stem.split("_")
        entities = dict(pair.split("-", 1) for pair in pairs)
        query = {name: entities.get(key, Query.NONE) for key, name in names.items()}
        found = layout.get(scope="nipype-secondlevel", suffix=suffix, extension=f".{extension}",
                           return_type="filename", **query)
        assert found == [str(path)], path.name
