"""Layer 4: the ``nipype-secondlevel`` command (argument parsing and reporting only)."""

import argparse
import shutil
import sys
from pathlib import Path

from . import __version__
from .errors import InputError, bad_input

PROG = "nipype-secondlevel"


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def probability(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_run_options(parser, default_out):
    run = parser.add_argument_group("run")
    run.add_argument("--out-dir", type=Path, default=Path(default_out),
                     help="folder for the results (default: %(default)s)")
    run.add_argument("--work-dir", type=Path, default=Path("work"),
                     help="cache folder; a rerun reuses what did not change (default: %(default)s)")
    run.add_argument("--plugin", choices=["Linear", "MultiProc"], default="Linear",
                     help="Nipype execution plugin (default: %(default)s; the reference "
                     "analysis is one chain of nodes, so MultiProc only adds start-up time)")
    run.add_argument("--n-procs", type=positive_int, default=None,
                     help="processes for MultiProc (default: all cores)")
    run.add_argument("--quiet", action="store_true", help="no per-node progress lines")
    stats = parser.add_argument_group("analysis")
    stats.add_argument("--n-subjects", type=positive_int, default=16,
                       help="number of subjects (default: %(default)s)")
    stats.add_argument("--threshold", type=positive_float, default=3.1,
                       help="z threshold, both signs (default: %(default)s, p < .001 uncorrected)")
    stats.add_argument("--height-control", choices=["none", "fpr", "fdr", "bonferroni"],
                       default="none",
                       help="none: use --threshold; fpr/fdr/bonferroni: use --alpha")
    stats.add_argument("--alpha", type=probability, default=0.001,
                       help="p level for --height-control fpr/fdr/bonferroni (default: %(default)s)")
    stats.add_argument("--cluster-size", type=int, default=0,
                       help="minimum cluster size in voxels (default: %(default)s)")
    stats.add_argument("--one-sided", action="store_true",
                       help="threshold positive values only")
    stats.add_argument("--mask-strategy", choices=["nilearn", "mni152", "coverage"],
                       default="nilearn", help="group mask (default: %(default)s)")


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
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    localizer = commands.add_parser(
        "localizer", help="the reference analysis on Brainomics/Localizer (downloads)"
    )
    add_run_options(localizer, "results/localizer")
    localizer.add_argument("--data-dir", type=Path, default=None,
                           help="data folder (default: nilearn's, e.g. ~/nilearn_data)")
    localizer.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    graph = commands.add_parser("graph", help="draw the workflow graph (PNG and SVG)")
    graph.add_argument("--out-dir", type=Path, default=Path("results/graph"),
                       help="folder for the pictures (default: %(default)s)")
    return parser


def analysis_options(args):
    return {
        "mask_strategy": args.mask_strategy,
        "height_control": args.height_control,
        "threshold": args.threshold,
        "alpha": args.alpha,
        "cluster_size": args.cluster_size,
        "two_sided": not args.one_sided,
    }


def build_workflow(args):
    from .workflows import init_demo_wf, init_localizer_wf

    out_dir = str(args.out_dir.absolute())
    if args.command == "demo":
        if args.n_subjects < 2:
            raise bad_input("--n-subjects", f"a paired test needs at least 2, got {args.n_subjects}")
        return init_demo_wf(out_dir, n_subjects=args.n_subjects, seed=args.seed,
                            **analysis_options(args))
    if not 2 <= args.n_subjects <= 94:
        raise bad_input("--n-subjects", f"the Localizer has 94 subjects, got {args.n_subjects}")
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise bad_input(f"--data-dir {args.data_dir}", "is not a folder")
    return init_localizer_wf(out_dir, n_subjects=args.n_subjects, data_dir=args.data_dir,
                             **analysis_options(args))


def run(args):
    from .execution import run_workflow

    if args.cluster_size < 0:
        raise bad_input("--cluster-size", f"must be 0 or more, got {args.cluster_size}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise bad_input(f"--out-dir {args.out_dir}", "exists and is not a folder")
    workflow = build_workflow(args)
    created = not args.out_dir.exists()
    try:
        summary = run_workflow(workflow, args.work_dir, plugin=args.plugin,
                               n_procs=args.n_procs, progress=not args.quiet)
    finally:
        if created and args.out_dir.is_dir() and not any(args.out_dir.iterdir()):
            args.out_dir.rmdir()
    out = args.out_dir.absolute()
    print(f"{len(summary.executed)} node(s) executed, {len(summary.cached)} from the cache, "
          f"in {summary.seconds:.1f} s")
    print(f"Results in {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}")
    return 0


def draw_graph(args):
    from .execution import quiet_nipype
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


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .execution import WorkflowFailed

    try:
        if args.command == "graph":
            return draw_graph(args)
        return run(args)
    except (InputError, WorkflowFailed) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume from the cache",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
