"""design.tsv and the design picture label their rows and keep the table's order; the
report lists the inputs of relative-path and CSV tables."""

import hashlib
import re

import numpy as np
import pandas as pd
import pytest
from conftest import planned_design
from group_data import make_group_table

from nipype_secondlevel.cli import main
from nipype_secondlevel.reporting import figures


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """A table of 6 subjects x 2 conditions in a shuffled row order, subjects as '01'..."""
    table = make_group_table(tmp_path_factory.mktemp("rows") / "data", n_subjects=6)
    rows = pd.read_csv(table, sep="\t", dtype={"subject": str})
    rows["subject"] = [s[1:] for s in rows["subject"]]  # "s03" -> "03": read as text
    rows = rows.sample(frac=1, random_state=3).reset_index(drop=True)
    rows.to_csv(table, sep="\t", index=False)
    return table, rows


def design_of(tmp_path, table, **options):
    return planned_design(tmp_path, table, **options)


def test_paired_rows_follow_the_table_and_are_labelled(tmp_path, shuffled):
    table, rows = shuffled
    out = design_of(tmp_path, table, design="paired", conditions=["a", "b"])
    labelled = pd.read_csv(out.design_table, sep="\t", dtype=str)
    assert list(labelled.columns[:3]) == ["subject", "condition", "group"]
    pd.testing.assert_frame_equal(labelled[["subject", "condition", "group"]],
                                  rows[["subject", "condition", "group"]].astype(str))
    subjects = list(dict.fromkeys(rows["subject"]))  # order of first appearance
    assert list(labelled.columns[3:]) == ["a_vs_b", *subjects]
    matrix = pd.read_csv(out.design_matrix, sep="\t")
    assert list(matrix.columns) == ["a_vs_b", *subjects]  # the estimate's: no labels
    np.testing.assert_array_equal(matrix["a_vs_b"], (rows["condition"] == "a").astype(float))
    for subject in subjects:
        np.testing.assert_array_equal(matrix[subject], (rows["subject"] == subject).astype(float))
    assert out.in_files == [str(table.parent / p) for p in rows["path"]]


def test_two_sample_rows_follow_the_table(tmp_path, shuffled):
    table, rows = shuffled
    out = design_of(tmp_path, table, design="two-sample", conditions=["b"])
    picked = rows[rows["condition"] == "b"].reset_index(drop=True)
    labelled = pd.read_csv(out.design_table, sep="\t", dtype={"subject": str})
    assert list(labelled["subject"]) == list(picked["subject"])
    np.testing.assert_array_equal(labelled["patients"], (picked["group"] == "patients"))
    assert out.in_files == [str(table.parent / p) for p in picked["path"]]


def test_design_file_may_carry_the_labels_and_they_must_match(tmp_path, shuffled):
    table, rows = shuffled
    out = design_of(tmp_path / "paired", table, design="paired", conditions=["a", "b"])
    back = design_of(tmp_path / "file", table, design="file", design_file=out.design_table)
    pd.testing.assert_frame_equal(pd.read_csv(back.design_matrix, sep="\t"),
                                  pd.read_csv(out.design_matrix, sep="\t"))
    swapped = pd.read_csv(out.design_table, sep="\t", dtype=str).iloc[[1, 0, *range(2, 12)]]
    swapped.to_csv(tmp_path / "swapped.tsv", sep="\t", index=False)
    said = [f"subject {rows['subject'][i]}, condition {rows['condition'][i]}, group "
            f"{rows['group'][i]}" for i in (1, 0)]
    with pytest.raises(Exception, match=rf"swapped.tsv: row 1 is {said[0]} but the inputs "
                       rf"table's row 1 is {said[1]} \(the rows must follow the table\)"):
        design_of(tmp_path / "bad", table, design="file",
                  design_file=str(tmp_path / "swapped.tsv"))


def test_design_picture_labels_its_rows(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(
        [t.get_text() for t in fig.axes[0].get_yticklabels()]))
    design = pd.DataFrame({"a": np.ones(4), "b": [0.0, 1, 0, 1]})
    figures.plot_design(design, tmp_path / "d.png", row_labels=["s1 a", "s1 b", "s2 a", "s2 b"])
    figures.plot_design(pd.DataFrame({"a": np.ones(200)}), tmp_path / "e.png",
                        row_labels=[f"r{i}" for i in range(200)])
    assert drawn[0] == ["s1 a", "s1 b", "s2 a", "s2 b"]
    # 200 rows: every 4th is labelled, so that the labels stay readable
    assert drawn[1] == [f"r{i}" for i in range(0, 200, 4)]  # 50 <= MAX_ROW_LABELS


def test_report_lists_the_inputs_of_a_relative_path_csv_table(tmp_path, capsys):
    table = make_group_table(tmp_path / "data", n_subjects=4, conditions=("a",))
    csv = table.with_suffix(".csv")
    pd.read_csv(table, sep="\t").to_csv(csv, index=False)  # relative paths, commas
    assert main(["run", "--inputs", str(csv), "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet"]) == 0
    report = (tmp_path / "out" / "report.html").read_text()
    section = report[report.index('id="inputs"'):]
    section = section[:section.index("</table>")]
    assert "missing" not in section
    for path in pd.read_csv(csv)["path"]:
        digest = hashlib.sha256((csv.parent / path).read_bytes()).hexdigest()
        assert digest in section and str(csv.parent / path) in section
    design = pd.read_csv(tmp_path / "out" / "design.tsv", sep="\t")
    assert list(design.columns) == ["subject", "condition", "group", "intercept"]
    assert re.search(r"rows labelled by subject, condition, group", report)
