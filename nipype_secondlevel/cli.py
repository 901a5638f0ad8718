"""Layer 4: the ``nipype-secondlevel`` command (argument parsing and reporting only)."""

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

from . import __version__
from .io.errors import InputError, InputWarning, bad_input
from .runtime.execution import PLUGINS

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


def folder(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (give a folder, e.g. '.')")
    return Path(text)


def probability(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_run_options(parser, default_out):
    run = parser.add_argument_group("run")
    run.add_argument("--out-dir", type=folder, default=Path(default_out),
                     help="folder for the results: it holds this run's results only "
                     "(those of an earlier run it does not produce are removed) "
                     "(default: %(default)s)")
    run.add_argument("--replace-results", action="store_true",
                     help="delete what the results folder holds that nipype-secondlevel "
                     "did not write (default: refuse such a folder)")
    run.add_argument("--work-dir", type=folder, default=Path("work"),
                     help="cache folder, outside the results folder; a rerun reuses what "
                     "did not change (default: %(default)s)")
    run.add_argument("--plugin", choices=list(PLUGINS), default="Linear",
                     help="Nipype execution plugin (default: %(default)s; the reference "
                     "analysis is one chain of nodes, so MultiProc only adds start-up time)")
    run.add_argument("--sbatch-args", default="",
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
                       default="nilearn", help="group mask (default: %(default)s)")
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
    graph = commands.add_parser("graph", help="draw the workflow graph (PNG and SVG)")
    graph.add_argument("--out-dir", type=folder, default=Path("results/graph"),
                       help="folder for the pictures (default: %(default)s)")
    return parser


def add_group_command(commands):
    """The ``run`` command: any group design on the user's own maps."""
    group = commands.add_parser(
        "run", help="any group design on your own maps (an inputs table)",
        description="Group analysis of the maps listed in an inputs table (TSV: subject, "
        "path, condition and/or group, optional variance_path and covariate columns).",
    )
    group.add_argument("--inputs", type=Path, required=True,
                       help="inputs table (TSV or CSV); relative paths are read from its folder")
    add_run_options(group, "results/run")
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


def group_options(args):
    """Check the table, the design and the contrasts now; return the workflow options."""
    from .design.contrasts import parse_contrasts
    from .design.matrices import group_design
    from .design.tables import read_inputs_table
    from .io.images import check_map_header

    for option, path in (("--inputs", args.inputs), ("--design-file", args.design_file),
                         ("--reference-map", args.reference_map)):
        if path is not None and not path.is_file():
            raise bad_input(f"{option} {path}", "file not found")
    if args.design_file is not None and args.design != "file":
        raise bad_input("--design-file", f"is for --design file, not --design {args.design}")
    weighted = args.estimation != "ols"
    table = read_inputs_table(args.inputs, require_condition=args.design == "paired",
                              covariates=args.covariates, variances=weighted)
    design = group_design(
        table, design=args.design, conditions=args.conditions, groups=args.groups,
        covariates=args.covariates, center=not args.no_center_covariates,
        design_file=args.design_file, blocks=args.exchangeability_blocks,
        where=f"inputs table {args.inputs.absolute()}",
    )
    parse_contrasts(args.contrasts or design.default_contrasts, design.matrix.columns)
    # Every map the design uses opens as a 3D image of the size its header gives
    # (headers and gzip trailers only: the data are read by the nodes).
    if args.reference_map is not None:
        check_map_header(args.reference_map.absolute(), "--reference-map")
    for path in design.paths:
        check_map_header(path, "input map")
    for path in design.variance_paths or []:
        check_map_header(path, "variance map")
    return {
        "inputs_table": str(args.inputs.absolute()),
        "design": args.design,
        "conditions": args.conditions,
        "groups": args.groups,
        "covariates": args.covariates,
        "center_covariates": not args.no_center_covariates,
        "design_file": str(args.design_file.absolute()) if args.design_file else None,
        "contrasts": args.contrasts,
        "estimation": args.estimation,
        "first_level_dof": args.first_level_dof,
        "reference_map": str(args.reference_map.absolute()) if args.reference_map else None,
    }


def analysis_options(args):
    """Options of :func:`init_group_analysis_wf` shared by every command."""
    return {
        "mask_strategy": args.mask_strategy,
        "height_control": args.height_control,
        "threshold": args.threshold,
        "alpha": args.alpha,
        "cluster_size": args.cluster_size,
        "two_sided": not args.one_sided,
        "correction": args.correction,
        "n_perm": args.n_perm,
        "n_chunks": args.n_chunks,
        "perm_seed": args.perm_seed,
        "cluster_forming_p": args.cluster_forming_p,
        "perm_scheme": args.perm_scheme,
        "exchangeability_blocks": args.exchangeability_blocks,
        "mem_gb": args.mem_gb,
    }


def build_workflow(args):
    import shlex

    from .workflows import init_demo_wf, init_group_pipeline_wf, init_localizer_wf

    out_dir = str(args.out_dir.absolute())
    # The command line, as typed, goes into the HTML report.
    command = shlex.join([PROG, *getattr(args, "argv", [])])
    if args.command == "run":
        return init_group_pipeline_wf(out_dir, command=command, **group_options(args),
                                      **analysis_options(args))
    if args.command == "demo":
        if args.n_subjects < 2:
            raise bad_input("--n-subjects", f"a paired test needs at least 2, got {args.n_subjects}")
        check_simulation_fits(args.n_subjects)
        return init_demo_wf(out_dir, n_subjects=args.n_subjects, seed=args.seed,
                            command=command, **analysis_options(args))
    if not 2 <= args.n_subjects <= 94:
        raise bad_input("--n-subjects", f"the Localizer has 94 subjects, got {args.n_subjects}")
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise bad_input(f"--data-dir {args.data_dir}", "is not a folder")
    return init_localizer_wf(out_dir, n_subjects=args.n_subjects, data_dir=args.data_dir,
                             estimation=args.estimation, command=command,
                             **analysis_options(args))


def check_simulation_fits(n_subjects):
    """Refuse a simulated sample larger than this machine's memory (it is made at once)."""
    import os

    from .datasets.simulation import simulation_bytes

    needed = simulation_bytes(n_subjects)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every system
        return
    if needed > available:
        raise bad_input(f"--n-subjects {n_subjects}", f"the simulation holds every map in "
                        f"memory ({needed / 2**30:.1f} GiB), more than this machine has "
                        f"({available / 2**30:.1f} GiB)")


def run(args):
    from .io.results_folder import (
        check_results_folder,
        check_writable_folder,
        read_manifest,
        remove_entries,
    )
    from .runtime.console import nipype_console_off
    from .runtime.execution import run_workflow
    from .runtime.locking import WorkFolderLock

    check_writable_folder(args.work_dir, "--work-dir")
    foreign = check_results_folder(args.out_dir, args.work_dir, replace=args.replace_results)
    workflow = build_workflow(args)
    created = not args.out_dir.exists()
    try:
        # One run per work folder; a lock left by a killed run is released by the kernel.
        # A failed node is one line: nipype's own log of it stays in the crash file.
        with WorkFolderLock(args.work_dir, wait=args.wait), nipype_console_off():
            remove_entries(args.out_dir, foreign)  # --replace-results, once all checks passed
            summary = run_workflow(workflow, args.work_dir, plugin=args.plugin,
                                   n_procs=args.n_procs, progress=not args.quiet)
    finally:
        if created and args.out_dir.is_dir() and not any(args.out_dir.iterdir()):
            args.out_dir.rmdir()
    out = args.out_dir.absolute()
    print(f"{len(summary.executed)} node(s) executed, {len(summary.cached)} from the cache, "
          f"in {summary.seconds:.1f} s")
    print(f"Results in {out}:")
    for name in read_manifest(out):
        print(f"  {name}")
    return 0


def draw_graph(args):
    from .runtime.execution import quiet_nipype
    from .workflows import init_demo_wf

    quiet_nipype()
    if shutil.which("dot") is None:
        raise bad_input("graph", "the 'dot' program of Graphviz is not installed "
                        "(e.g. apt-get install graphviz)")
    out = args.out_dir.absolute()
    out.mkdir(parents=True, exist_ok=True)
    workflow = init_demo_wf(str(out))
    written = []
    for style in ("colored", "hierarchical"):
        for fmt in ("png", "svg"):
            workflow.write_graph(dotfilename=str(out / f"workflow_{style}.dot"),
                                 graph2use=style, format=fmt, simple_form=True)
            written.append(out / f"workflow_{style}.{fmt}")
    for path in written:
        print(path)
    return 0


def format_warning(message, category, filename, lineno, line=None,
                   formatted=warnings.formatwarning):
    """Warnings about the user's input as one line ``nipype-secondlevel: warning: ...``."""
    if issubclass(category, InputWarning):
        return f"{PROG}: warning: {message}\n"
    return formatted(message, category, filename, lineno, line)


def main(argv=None):
    """The command; exit status 0 done, 1 bad input or a failed node (one line), 2 a
    command line argparse refused (usage and one line), 130 interrupted."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from .runtime.execution import WorkflowFailed

    formatted, warnings.formatwarning = warnings.formatwarning, format_warning
    pid = os.getpid()
    try:
        if args.command == "graph":
            return draw_graph(args)
        return run(args)
    except (InputError, WorkflowFailed) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if os.getpid() != pid:  # a forked worker unwinding a copy of this stack: be silent
            os._exit(130)
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatted


if __name__ == "__main__":
    sys.exit(main())
