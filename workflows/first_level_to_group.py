"""A group analysis as one part of your own Nipype workflow, with permutation inference.

Your first-level workflow ends with one contrast map per subject; the group analysis
builder (``init_group_analysis_wf``) takes them as an inputs table through its
``inputnode`` and gives its maps on its ``outputnode``. Its plan is made before the run
from the subjects' labels, which you know in advance (``plan_analysis(rows=...)``): the
design, the contrasts and the permutation test are decided there. Here the first level
is stood in for by the built-in simulated sample (16 subjects, two conditions): the
``first_level`` node writes each subject's "vertical minus horizontal" map, the way your
own first-level contrast would, and the group asks whether the mean is non-zero
(one-sample design) with a max-T permutation test (sign flips: 2^16 = 65,536 patterns,
so the test is exhaustive with the default --n-perm). Every step is cached in ./work.

    python workflows/first_level_to_group.py [--correction tfce] [--n-perm 1000] [--help]

Replace ``first_level`` with your own nodes (or pass --inputs TABLE: a TSV with
columns subject and path, as `nipype-secondlevel run` reads it).
"""

import argparse
import os

from nipype_secondlevel.spec import PERMUTATION_CORRECTIONS, OptionError


def first_level_contrasts(inputs_table):
    """Each subject's vertical minus horizontal map and the inputs table listing them."""
    from pathlib import Path

    import pandas as pd
    from nilearn.image import math_img

    rows = pd.read_csv(inputs_table, sep="\t", dtype={"subject": str})
    maps = rows.pivot(index="subject", columns="condition", values="path")
    out = Path("first_level").absolute()
    out.mkdir(exist_ok=True)
    table = []
    for subject, paths in maps.iterrows():
        path = out / f"sub-{subject}_contrast-verticalVsHorizontal_stat-effect_statmap.nii.gz"
        math_img("v - h", v=paths["vertical"], h=paths["horizontal"]).to_filename(path)
        table.append({"subject": subject, "path": str(path)})
    pd.DataFrame(table).to_csv(out / "inputs.tsv", sep="\t", index=False)
    return str(out / "inputs.tsv")


def build(inputs=None, correction="maxT", n_perm=65536, work_dir="work",
          out_dir="results/first_level_to_group"):
    """The workflow: a first level (or your ``inputs`` table) -> the group -> a sink."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from nipype_secondlevel.datasets.simulation import simulation_rows
    from nipype_secondlevel.interfaces import DerivativesSink, SimulatePaired
    from nipype_secondlevel.io.naming import DESIGN_TABLE, correction_desc, output_name
    from nipype_secondlevel.workflows import init_group_analysis_wf, plan_analysis

    options = {"design": "one-sample", "contrasts": ["intercept"], "correction": correction,
               "n_perm": n_perm}
    if inputs is None:  # the subjects of the first level, known before it runs
        simulated = simulation_rows(16, ["vertical", "horizontal"])
        subjects = sorted({row["subject"] for row in simulated})
        plan = plan_analysis(rows=[{"subject": s} for s in subjects], **options)
    else:
        plan = plan_analysis(inputs_table=os.path.abspath(inputs), **options)
    workflow = pe.Workflow(name="first_level_to_group", base_dir=os.path.abspath(work_dir))
    # An inputs table names files that no connection carries: keep them.
    workflow.config["execution"]["remove_unnecessary_outputs"] = False
    group = init_group_analysis_wf(plan, name="group")
    if inputs is None:
        simulate = pe.Node(SimulatePaired(n_subjects=16), name="simulate")
        first_level = pe.Node(niu.Function(function=first_level_contrasts,
                                           input_names=["inputs_table"],
                                           output_names=["inputs_table"]),
                              name="first_level")
        workflow.connect([
            (simulate, first_level, [("inputs_table", "inputs_table")]),
            (first_level, group, [("inputs_table", "inputnode.inputs_table")]),
        ])
    # The z maps, the maps that decide significance (here FWE-corrected), their cluster
    # tables and glass brains, and the design, each named at the sink.
    (contrast,) = plan.contrasts
    label, desc = contrast.label, correction_desc(correction, contrast.kind)
    names = {
        "z_maps": [output_name("statmap", contrast=label, stat="z")],
        "significance_maps": [output_name("corrected", contrast=label, desc=desc)],
        "significance_cluster_tables": [output_name("corrected_clusters", contrast=label,
                                                    desc=desc)],
        "glass_brains": [output_name("glass_brain", contrast=label)],
        "design_table": DESIGN_TABLE,
    }
    sink = pe.Node(DerivativesSink(names=names, out_dir=os.path.abspath(out_dir)), name="sink")
    workflow.connect([(group, sink, [(f"outputnode.{field}", field) for field in names])])
    return workflow


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Subjects' first-level contrast maps -> a one-sample group analysis "
        "with permutation inference, as one Nipype workflow (built-in simulated sample "
        "unless --inputs).")
    parser.add_argument("--inputs", metavar="TABLE",
                        help="your inputs table (columns subject, path) instead of the "
                        "simulated first level")
    parser.add_argument("--correction", default="maxT", choices=PERMUTATION_CORRECTIONS,
                        help="permutation correction (default: %(default)s)")
    parser.add_argument("--n-perm", type=int, default=65536,
                        help="sign-flip patterns; all 2^n when this is at least 2^n "
                        "(default: %(default)s)")
    parser.add_argument("--work-dir", default="work", help="cache folder (default: %(default)s)")
    parser.add_argument("--out-dir", default="results/first_level_to_group",
                        help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    from nipype_secondlevel.io.errors import InputError
    from nipype_secondlevel.runtime.execution import run_workflow

    try:
        workflow = build(args.inputs, args.correction, args.n_perm, args.work_dir,
                         args.out_dir)
    except (InputError, OptionError) as err:
        parser.error(str(err))
    # nipype's own log kept to warnings; one line per node instead (or workflow.run())
    run_workflow(workflow, args.work_dir)
    print(f"Results in {args.out_dir}")


if __name__ == "__main__":
    main()
