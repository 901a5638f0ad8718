"""The README's Python snippets run as written, on a tiny inputs table."""

import os
import re
from pathlib import Path

import nibabel as nib
import pandas as pd
from group_data import make_group_table

README = Path(__file__).resolve().parents[1] / "README.md"


def python_snippets():
    text = README.read_text()
    section = text[text.index("## From Python"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_from_python_snippets_run(tmp_path, monkeypatch):
    snippets = python_snippets()
    assert len(snippets) == 2 and "init_group_analysis_wf(plan" in snippets[0]
    make_group_table(tmp_path, n_subjects=6, conditions=("faces", "houses"))
    monkeypatch.chdir(tmp_path)
    for snippet in snippets:  # each on its own
        namespace = {}
        exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102
    # The analysis ran its two contrasts; the pipeline exported the paired test and its report.
    contrasts = tmp_path / "work" / "faces_wf" / "contrast" / "mapflow"
    assert sorted(os.listdir(contrasts)) == ["_contrast0", "_contrast1"]
    out = tmp_path / "results" / "faces"
    z = nib.load(out / "contrast-facesVsHouses_stat-z_statmap.nii.gz")
    assert z.shape == (10, 12, 10) and (out / "report.html").exists()
    assert len(pd.read_csv(out / "design.tsv", sep="\t")) == 12
    assert "group_wf.sink" in namespace["summary"].executed


def test_the_from_a_bids_dataset_command_runs(tmp_path, monkeypatch, bids_derivatives):
    """The command of "From a BIDS dataset", as written, on the generated BIDS tree; the
    output layout shown there is what it writes."""
    import shlex

    from nipype_secondlevel.cli import main

    text = README.read_text()
    section = text[text.index("## From a BIDS dataset"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)[0]
    command = shlex.split(block.replace("\\\n", " "))
    assert command[:3] == ["nipype-secondlevel", "run", "--bids-dir"]
    raw, _, _ = bids_derivatives
    (tmp_path / "raw").symlink_to(raw)
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    layout = re.findall(r"```\n(results/faces/\n.*?)```", section, re.DOTALL)[0]
    out = tmp_path / "results" / "faces"
    for line in layout.splitlines()[1:]:
        entry = line.split()[0].rstrip(",")
        if "{" in entry or "with --graph" in line:
            stem, _, rest = entry.partition("{")
            names = [f"{stem}{v}{rest.split('}')[1]}" for v in rest.split("}")[0].split(",")]
        else:
            names = [entry]
        if "with --graph" not in line:
            for name in names:
                assert (out / name).exists(), name
