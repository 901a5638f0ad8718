"""BIDS entities: the pybids configuration the package ships, and which entity gives the
condition of a BIDS input folder."""

import re
import shutil
from pathlib import Path

import pytest
from bids_data import SPACE, make_bids_derivatives
from test_bids import one_line_error

from nipype_secondlevel.design.bids import bids_inputs_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_layout_line_finds_every_map_by_its_entities(demo_run, tmp_path, monkeypatch):
    """The README's line, as written, on a results folder the package wrote: every file
    found by the contrast, stat and desc of its name, and only it."""
    from bids import BIDSLayout
    from bids.layout import Query

    out_dir, _, _ = demo_run
    results = tmp_path / "results" / "faces"
    shutil.copytree(out_dir, results)
    section = README.read_text()
    section = section[section.index("The results folder is itself a BIDS"):]
    snippet = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102
    layout = namespace["layout"]
    with pytest.raises(ValueError, match="'contrast' is not a recognized entity"):
        BIDSLayout(results, is_derivative=True).get(contrast="verticalVsHorizontal")
    files = sorted(p for p in results.iterdir()
                   if p.name != "dataset_description.json" and not p.name.startswith("."))
    assert sum(p.name.endswith("_statmap.nii.gz") for p in files) == 7  # and stat-n
    for path in files:
        stem, _, extension = path.name.partition(".")
        *pairs, suffix = stem.split("_")
        entities = dict(pair.split("-", 1) for pair in pairs)
        query = {name: entities.get(name, Query.NONE) for name in ("contrast", "stat", "desc")}
        found = layout.get(suffix=suffix, extension=f".{extension}", return_type="filename",
                           **query)
        assert found == [str(path)], path.name


@pytest.fixture(scope="module")
def one_contrast_tree(tmp_path_factory):
    """One contrast; every map also with desc-smoothed, in its space and in a second one."""
    folder = tmp_path_factory.mktemp("edge")
    raw, deriv, expected = make_bids_derivatives(folder, n_subjects=3, contrasts=("faces",))
    for path in expected["path"]:
        smoothed = path.replace("_stat-", "_desc-smoothed_stat-")
        shutil.copyfile(path, smoothed)
        shutil.copyfile(path, smoothed.replace(SPACE, "MNI152NLin6Asym"))
    return raw, deriv, expected


def test_a_difference_in_space_or_desc_is_not_a_condition(one_contrast_tree):
    """One contrast left by the filters: maps differing in space (or desc) are two maps of
    one condition, an error naming the entity to filter on."""
    _, deriv, expected = one_contrast_tree
    one_line_error(r"subject sub-01, condition faces has 2 maps \(.*\); they differ in space "
                   rf"\({SPACE}, MNI152NLin6Asym\): filter on it$",
                   bids_inputs_table, deriv, {"contrast": "faces", "desc": "smoothed"})
    one_line_error(r"subject sub-01, condition faces has 2 maps \(.*\); they differ in desc "
                   r"\(smoothed\): filter on it$",
                   bids_inputs_table, deriv, {"space": SPACE})
    one_line_error(r"condition faces has 3 maps .*they differ in space .*; desc \(smoothed\): "
                   r"filter on them$", bids_inputs_table, deriv)
    table = bids_inputs_table(deriv, {"space": SPACE, "desc": "smoothed"})
    assert list(table["path"]) == [p.replace("_stat-", "_desc-smoothed_stat-")
                                   for p in expected["path"]]
    assert list(table["condition"]) == ["faces"] * 3


def test_sessions_are_still_conditions_and_an_entity_can_be_chosen(tmp_path):
    _, deriv, _ = make_bids_derivatives(tmp_path, n_subjects=2, contrasts=("faces",),
                                        sessions=("1", "2"))
    table = bids_inputs_table(deriv)
    assert list(table["condition"]) == ["session1", "session2"] * 2
    first = next(deriv.rglob("*ses-1*_stat-effect_statmap.nii.gz"))
    shutil.copyfile(first, str(first).replace(SPACE, "MNI152NLin6Asym"))
    one_line_error(r"condition session1 has 2 maps .*they differ in space", bids_inputs_table,
                   deriv)
    chosen = bids_inputs_table(deriv, {"session": "1"}, condition_entity="space")
    assert sorted(set(chosen["condition"])) == ["MNI152NLin2009cAsym", "MNI152NLin6Asym"]
