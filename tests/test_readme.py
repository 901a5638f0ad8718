"""The README's Python snippets run as written, on a tiny inputs table."""

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
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


def bash_commands(heading):
    """Each command of the bash blocks of the README section ``heading``, as argument lists
    (continuation lines joined, comment lines dropped)."""
    import shlex

    text = README.read_text()
    section = text[text.index(f"\n## {heading}\n") + 1:] + "\n## "
    section = section[:section.index("\n## ", 1)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        lines = [line for line in block.replace("\\\n", " ").splitlines()
                 if line.strip() and not line.startswith("#")]
        commands += [shlex.split(line) for line in lines]
    return commands


def planned(command):
    """The plan of a command line, read from its workflow (every option checked, the
    workflow built, not run)."""
    from nipype_secondlevel.cli import build_parser, build_workflow
    from nipype_secondlevel.cli_options import join_dash_values
    from nipype_secondlevel.design.plan import Plan

    assert command[0] == "nipype-secondlevel"
    args = build_parser().parse_args(join_dash_values(command[1:]))
    args.argv = command[1:]
    workflow = build_workflow(args)
    return Plan.from_json(workflow.get_node("group_analysis_wf.plan").inputs.plan)


def test_the_set_up_commands_are_as_ci_and_new_users_run_them():
    """The two set-up blocks stay as written (CI runs the test command, `.ci/run`)."""
    assert bash_commands("Install and run the demo")[0] == [
        "pip", "install", ".", "&&", "nipype-secondlevel", "demo"]
    assert bash_commands("Development") == [
        ["pip", "install", "-e", ".[test]", "&&", "python", "-m", "pytest", "-n", "2"]]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && python -m pytest -n 2" in ci


def test_the_your_own_maps_commands_run_as_written(tmp_path, monkeypatch):
    """Every command of "Your own maps" on a table with the README's columns: each is
    accepted and planned as the comments say, and the one-sample test, run, gives scipy's
    one-sample t."""
    from scipy import stats

    from nipype_secondlevel.cli import main

    table = make_group_table(tmp_path, n_subjects=6, conditions=("faces", "houses"),
                             variances=True)
    rows = pd.read_csv(table, sep="\t")
    design = pd.DataFrame({c: (rows["condition"] == c).astype(float)
                           for c in ("faces", "houses")})
    design.to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)
    commands = bash_commands("Your own maps: designs and contrasts")
    assert len(commands) == 7
    plans = [planned(c) for c in commands]

    def weights(plan, label):
        (contrast,) = [c for c in plan.contrasts if c.label == label]
        return [dict(zip(plan.design.columns, row)) for row in contrast.weights], contrast.kind

    one, paired, two, covariate, f_test, own, mixed = plans
    assert one.design.columns == ["intercept"] and len(one.design.matrix) == 6
    assert paired.design.columns[0] == "faces_vs_houses" and len(paired.design.columns) == 7
    assert weights(two, "patientsMinusControls") == ([{"controls": -1, "patients": 1}], "t")
    assert weights(two, "controlsMinusPatients") == ([{"controls": 1, "patients": -1}], "t")
    assert weights(covariate, "age") == ([{"intercept": 0, "age": 1}], "t")
    assert weights(covariate, "interceptPlus40Age") == ([{"intercept": 1, "age": 40}], "t")
    assert weights(f_test, "groupsOrAge") == ([{"controls": -1, "patients": 1, "age": 0},
                                              {"controls": 0, "patients": 0, "age": 1}], "F")
    assert weights(own, "facesMinusHouses") == ([{"faces": 1, "houses": -1}], "t")
    assert mixed.options["estimation"] == "mixed" and all(mixed.design.variance_paths)

    assert main(commands[0][1:]) == 0
    faces = rows[rows["condition"] == "faces"]
    data = np.stack([nib.load(tmp_path / p).get_fdata() for p in faces["path"]])
    out = tmp_path / "results" / "run"
    t = nib.load(out / "contrast-intercept_stat-t_statmap.nii.gz").get_fdata()
    inside = nib.load(out / "desc-group_mask.nii.gz").get_fdata() > 0
    expected = stats.ttest_1samp(data[:, inside], 0).statistic
    np.testing.assert_allclose(t[inside], expected, rtol=1e-4, atol=1e-5)


def test_the_other_commands_are_accepted_and_planned(tmp_path, monkeypatch):
    """The commands of the demo, inference and cluster sections, as written, on a table
    with the README's columns: every option accepted and the plan made (not run: they
    download, run 10,000 permutations or need a cluster)."""
    make_group_table(tmp_path, n_subjects=6, conditions=("faces", "houses"))
    monkeypatch.chdir(tmp_path)
    commands = [c for heading in ("Install and run the demo",
                                  "Inference: corrections and permutation tests",
                                  "On a cluster: SLURM and other plugins")
                for c in bash_commands(heading)]
    commands = [c for c in commands if c[0] != "pip"]
    assert [c[1] for c in commands] == ["localizer", "demo", "run", "demo"]
    localizer, maxt, cluster, slurm = (planned(c) for c in commands)
    assert localizer.design.kind == slurm.design.kind == "paired"
    assert cluster.contrasts[0].permutations.model == "glm"  # Freedman-Lane: a covariate
    assert maxt.contrasts[0].permutations.n_perm == 10000
    assert len(maxt.contrasts[0].permutations.chunks) == 4
    assert not Path("/shared").exists()  # building the SLURM pipeline created nothing


SCRIPTS = sorted(str(p.relative_to(README.parent)) for folder in ("validation", "benchmarks")
                 for p in (README.parent / folder).glob("*.py") if p.name != "timing.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_slow_check_script_has_help(tmp_path, script):
    """`python validation/... --help` and `python benchmarks/... --help`, as the README
    says: usage, every option described, no traceback, nothing started or written."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(README.parent / script), "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"usage: {Path(script).name}")
    for line, following in zip(lines, [*lines[1:], ""]):
        if re.match(r"  \S", line) and not line.startswith("  usage"):
            described = re.search(r"\S {2,}\S", line) or following.startswith(" " * 8)
            assert described, f"{script}: {line.strip()} has no help"
    assert list(tmp_path.iterdir()) == []


def test_links_of_the_readme_and_docs_lead_somewhere():
    """Every relative link of README.md and docs/*.md names a file that exists and, with
    an anchor, a heading of it (GitHub's anchors: lower case, punctuation dropped)."""
    def anchors(path):
        headings = re.findall(r"^#+ (.*)$", path.read_text(), re.MULTILINE)
        return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}

    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            name, _, anchor = target.partition("#")
            linked = (page.parent / name).resolve() if name else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert anchor in anchors(linked), f"{page.name}: {target}"
