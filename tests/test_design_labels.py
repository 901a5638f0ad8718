"""Labels a hostile table may hold: design columns are unique by construction, labels
that would collide are refused in one line naming both, and odd but distinct labels
($, quotes, unicode, digits, reserved words) give the design built here by hand."""

import numpy as np
import pandas as pd
import pytest
from group_data import file_checksums, make_group_table

from nipype_secondlevel.cli import main

#: Subject labels: mathtext, quotes, unicode, digits equal as numbers, a reserved word of
#: the one-sample design, a prefix of the condition column.
SUBJECTS = [r"$\nope_{x}$", "it's", 'say "hi"', "é", "01", "1", "intercept", "a_vs_b_2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("labels") / "data",
                            n_subjects=len(SUBJECTS), conditions=("a", "b"))


def relabelled(data, folder, subjects=SUBJECTS, **columns):
    """The table with other subject labels (and other columns), written beside the maps."""
    table = pd.read_csv(data, sep="\t", dtype={"subject": str})
    codes = {s: i for i, s in enumerate(dict.fromkeys(table["subject"]))}
    table["subject"] = [subjects[codes[s]] for s in table["subject"]]
    for name, values in columns.items():
        table[name] = values
    path = data.parent / f"{folder}.tsv"
    table.to_csv(path, sep="\t", index=False)
    return path


def run(table, tmp_path, *options):
    return main(["run", "--inputs", str(table), "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work"), "--quiet", *options])


def test_odd_labels_give_the_design_built_by_hand(data, tmp_path):
    table = relabelled(data, "odd")
    assert run(table, tmp_path, "--design", "paired", "--conditions", "a", "b") == 0
    written = pd.read_csv(tmp_path / "out" / "design.tsv", sep="\t", dtype={"subject": str})
    rows = pd.read_csv(table, sep="\t", dtype={"subject": str})
    expected = {"a_vs_b": [1.0 if c == "a" else 0.0 for c in rows["condition"]]}
    for subject in SUBJECTS:
        expected[subject] = [1.0 if s == subject else 0.0 for s in rows["subject"]]
    assert list(written.columns) == ["subject", "condition", "group", *expected]
    assert list(written["subject"]) == list(rows["subject"])
    np.testing.assert_array_equal(written[list(expected)].to_numpy(),
                                  np.array(list(expected.values())).T)
    assert (tmp_path / "out" / "design.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["subject named like the condition column",
                                  "a reserved name", "groups equal once names",
                                  "covariate named like a group", "duplicated column"])
def test_labels_that_collide_are_refused_naming_both(data, tmp_path, capsys, case):
    """Before: a subject named a_vs_b replaced the paired design's condition column
    (exit 0, a wrong z map). Every collision is now one line, and nothing is written."""
    options = ["--design", "two-sample", "--conditions", "a"]
    if case == "subject named like the condition column":
        table = relabelled(data, "clash", [*SUBJECTS[:-1], "a_vs_b"])
        options = ["--design", "paired", "--conditions", "a", "b"]
        problem = ("the condition column ('a' vs 'b') and subject 'a_vs_b' both give the "
                   "design column 'a_vs_b': rename one of them")
    elif case == "a reserved name":
        table = relabelled(data, "reserved", [*SUBJECTS[:-1], "condition"])
        options = ["--design", "paired", "--conditions", "a", "b"]
        problem = ("subject 'condition' gives the design column 'condition', the name of a "
                   "row label of design.tsv (subject, condition, group): rename it")
    elif case == "groups equal once names":
        n = len(pd.read_csv(data, sep="\t"))
        table = relabelled(data, "groups", group=["a-b" if i % 4 < 2 else "a b"
                                                  for i in range(n)])
        problem = "group 'a b' and group 'a-b' both give the design column 'a_b'"
    elif case == "covariate named like a group":
        table = relabelled(data, "covariate", controls=1.0)
        options += ["--covariates", "controls"]
        problem = "group 'controls' and covariate 'controls' both give the design column"
    else:
        table = data.parent / "twice.tsv"
        text = data.read_text().splitlines()
        table.write_text("\n".join(f"{line}\t{line.split(chr(9))[3]}" for line in text) + "\n")
        problem = ("has 1 column name(s) given twice (path): which one is meant is unknown; "
                   "keep one of each")
    before = file_checksums(data.parent)
    code = run(table, tmp_path, *options)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"nipype-secondlevel: error: inputs table {table}: {problem}"), \
        err[0]
    assert not (tmp_path / "out").exists() and file_checksums(data.parent) == before
