"""Layer 4: the ``nipype-secondlevel`` command: checks before the run, the run, its report.

The command line itself is parsed by :mod:`nipype_secondlevel.cli_options`.
"""

import errno
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

from .cli_options import PROG, build_parser, join_dash_values
from .io.errors import InputError, InputWarning, bad_input
from .runtime.console import one_line_warnings
from .runtime.execution import WorkflowFailed  # (imports no nipype)

#: Entity filters of ``run --bids-dir``: option attribute -> pybids entity.
BIDS_FILTERS = {"task": "task", "space": "space", "session": "session",
                "bids_contrast": "contrast"}


def bids_filters(args):
    """The entity filters of the command line; refused without ``--bids-dir``."""
    filters = {entity: getattr(args, option) for option, entity in BIDS_FILTERS.items()
               if getattr(args, option)}
    for entity, value in args.bids_filter:
        filters.setdefault(entity, []).append(value)
    given = [f"--{o.replace('_', '-')}" for o in (*BIDS_FILTERS, "bids_filter", "raw_dir")
             if getattr(args, o)] + (["--group-column"] if args.group_column != "group" else [])
    given += ["--condition-entity"] if args.condition_entity != "auto" else []
    if args.bids_dir is None and given:
        raise bad_input(given[0], "is a filter of --bids-dir, which is not given")
    return filters


def require_dot(where):
    """Refuse ``where`` (an option or command drawing a graph) without Graphviz's dot."""
    if shutil.which("dot") is None:
        raise bad_input(where, "the 'dot' program of Graphviz is not installed "
                        "(e.g. apt-get install graphviz)")


def bids_table(args, filters):
    """Build the inputs table of ``--bids-dir`` (pybids) and write it into the work folder
    (rewritten only when it changed, so that the cache holds); returns its path."""
    import filecmp
    import tempfile

    from .design.bids import bids_inputs_table
    from .io.tables import write_inputs_table

    deriv = args.bids_dir.absolute()
    raw = args.raw_dir
    if raw is None and not (deriv / "participants.tsv").exists() \
            and deriv.parent.name == "derivatives" \
            and (deriv.parent.parent / "participants.tsv").exists():
        raw = deriv.parent.parent  # DATASET/derivatives/NAME: the raw dataset's table
    table = bids_inputs_table(deriv, filters, variances=args.estimation != "ols",
                              raw_dir=raw, group_column=args.group_column,
                              condition_entity=args.condition_entity)
    source = {"BIDSDir": str(deriv), "Filters": filters,
              "ParticipantsFrom": str((raw or deriv).absolute()),
              "GroupColumn": args.group_column}
    folder = args.work_dir.absolute() / "bids_inputs"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "inputs.tsv"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        written = Path(write_inputs_table(table, Path(scratch) / "inputs.tsv", source))
        for new in (written, written.with_suffix(".json")):
            old = folder / new.name
            if not (old.exists() and filecmp.cmp(new, old, shallow=False)):
                os.replace(new, old)
    return target


def check_mask(path, reference):
    """``--mask``: a 3D image with voxels, some on the maps' grid; warn if it is resampled.

    ``reference``: (shape, affine) of the maps' grid.
    """
    import nibabel as nib
    import numpy as np

    from .io.images import check_map_header, load_img
    from .io.masks import resample_mask

    if not path.is_file():
        raise bad_input(f"--mask {path}", "file not found")
    check_map_header(path.absolute(), "--mask")
    img = load_img(path, "--mask")
    where = f"--mask {path}"
    if not np.any(np.asanyarray(img.dataobj)):
        raise bad_input(where, "is empty (no non-zero voxel)")
    shape, affine = reference
    if img.shape[:3] == tuple(shape) and np.allclose(img.affine, affine):
        return
    on_grid = resample_mask(img, nib.Nifti1Image(np.zeros(shape, np.uint8), affine))
    if not np.any(np.asanyarray(on_grid.dataobj)):
        raise bad_input(where, f"has no voxel on the maps' grid ({' x '.join(map(str, shape))}"
                        "): is it in the maps' space?")
    warnings.warn(f"{where} is not on the maps' grid: resampled to it (nearest neighbour)",
                  InputWarning, stacklevel=2)


def check_cluster_forming_p(args, dof, kinds):
    """``--cluster-forming-p``: its threshold finite for every contrast (``kinds``)."""
    from .design.contrasts import cluster_forming_value

    if args.correction in ("cluster-size", "cluster-mass"):
        for kind in kinds:
            cluster_forming_value(args.cluster_forming_p, dof, kind,
                                  "positive" if args.one_sided or kind != "t" else "two-sided")


def group_options(args):
    """Check the table, the design and the contrasts now; return the workflow options."""
    import numpy as np

    from .design.contrasts import parse_contrasts
    from .design.matrices import group_design
    from .design.tables import read_inputs_table
    from .io.images import check_map_header

    filters = bids_filters(args)
    for option, path in (("--inputs", args.inputs), ("--design-file", args.design_file),
                         ("--reference-map", args.reference_map)):
        if path is not None and not path.is_file():
            raise bad_input(f"{option} {path}", "file not found")
    if args.design_file is not None and args.design != "file":
        raise bad_input("--design-file", f"is for --design file, not --design {args.design}")
    weighted = args.estimation != "ols"
    inputs = args.inputs if args.bids_dir is None else bids_table(args, filters)
    table = read_inputs_table(inputs, require_condition=args.design == "paired",
                              covariates=args.covariates, variances=weighted)
    design = group_design(
        table, design=args.design, conditions=args.conditions, groups=args.groups,
        covariates=args.covariates, center=not args.no_center_covariates,
        design_file=args.design_file, blocks=args.exchangeability_blocks,
        where=(f"inputs table {inputs.absolute()}" if args.bids_dir is None else
               f"inputs table built from --bids-dir {args.bids_dir}"),
    )
    parsed = parse_contrasts(args.contrasts or design.default_contrasts, design.matrix.columns)
    check_cluster_forming_p(args, design.matrix.shape[0] - np.linalg.matrix_rank(design.matrix),
                            [kind for _, _, kind in parsed])
    # Every map the design uses opens as a 3D image of the size its header gives
    # (headers and gzip trailers only: the data are read by the nodes).
    if args.reference_map is not None:
        check_map_header(args.reference_map.absolute(), "--reference-map")
    for path in design.paths:
        check_map_header(path, "input map")
    for path in design.variance_paths or []:
        check_map_header(path, "variance map")
    import nibabel as nib

    from .io.grids import check_smoothing

    grid = nib.load(str(args.reference_map or design.paths[0]))
    check_smoothing(args.smoothing_fwhm, grid.shape, grid.affine)
    if args.mask is not None:
        check_mask(args.mask, (grid.shape[:3], grid.affine))
    return {
        "inputs_table": str(inputs.absolute()),
        "export_files": [] if args.bids_dir is None else [str(inputs)],
        "input_files": [*design.paths, *(design.variance_paths or [])],
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
    from .reporting.anatomy import DEFAULT_ATLASES

    if args.mask is not None and args.mask_strategy is not None:
        raise bad_input(f"--mask {args.mask}", f"conflicts with --mask-strategy "
                        f"{args.mask_strategy}: give one of them")
    atlases = list(DEFAULT_ATLASES if args.atlas is None else args.atlas)
    if "none" in atlases and len(atlases) > 1:
        raise bad_input("--atlas none", "cannot go with other atlases")
    if args.graph:
        require_dot("--graph")
    return {
        "mask_strategy": args.mask_strategy or "nilearn",
        "mask_file": str(args.mask.absolute()) if args.mask is not None else None,
        "smoothing_fwhm": args.smoothing_fwhm,
        "atlases": [] if atlases == ["none"] else atlases,
        "graph": args.graph,
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
    analysis = analysis_options(args)  # option conflicts first
    if args.command == "run":
        return init_group_pipeline_wf(out_dir, command=command, **group_options(args),
                                      **analysis)
    from .datasets.simulation import LOCALIZER_AFFINE, LOCALIZER_SHAPE
    from .io.grids import check_smoothing

    # The demo's and the Localizer's maps are on one grid.
    check_smoothing(args.smoothing_fwhm, LOCALIZER_SHAPE, LOCALIZER_AFFINE)
    if args.mask is not None:
        check_mask(args.mask, (LOCALIZER_SHAPE, LOCALIZER_AFFINE))
    if args.command == "demo":
        if args.n_subjects < 2:
            raise bad_input("--n-subjects", f"a paired test needs at least 2, got {args.n_subjects}")
        check_simulation_fits(args.n_subjects)
        check_cluster_forming_p(args, args.n_subjects - 1, ["t"])
        return init_demo_wf(out_dir, n_subjects=args.n_subjects, seed=args.seed,
                            command=command, **analysis)
    if not 2 <= args.n_subjects <= 94:
        raise bad_input("--n-subjects", f"the Localizer has 94 subjects, got {args.n_subjects}")
    check_cluster_forming_p(args, args.n_subjects - 1, ["t"])
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise bad_input(f"--data-dir {args.data_dir}", "is not a folder")
    return init_localizer_wf(out_dir, n_subjects=args.n_subjects, data_dir=args.data_dir,
                             estimation=args.estimation, command=command,
                             **analysis)


def check_simulation_fits(n_subjects):
    """Refuse a simulated sample larger than this machine's memory (it is made at once)."""
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
    from .io.progress import progress_lines
    from .io.results_folder import check_results_folder, check_writable_folder, read_manifest
    from .runtime.console import nipype_console_off
    from .runtime.execution import run_workflow
    from .runtime.interrupts import StopOnSignal
    from .runtime.locking import FolderLock, results_lock_path

    check_writable_folder(args.work_dir, "--work-dir")
    given = [getattr(args, o, None) for o in ("inputs", "design_file", "mask", "reference_map")]
    check_results_folder(args.out_dir, args.work_dir, replace=args.replace_results,
                         inputs=[path for path in given if path is not None])
    workflow = build_workflow(args)
    created = not args.out_dir.exists()
    try:
        # One run per work folder and per results folder (their locks are released by
        # the kernel when a run is killed). A failed node is one line: nipype's own log
        # of it stays in the crash file.
        with (StopOnSignal(), FolderLock(args.work_dir, wait=args.wait),
              FolderLock(args.out_dir, "results folder", path=results_lock_path(args.out_dir),
                         wait=args.wait),
              nipype_console_off(), progress_lines(not args.quiet)):
            summary = run_workflow(workflow, args.work_dir, plugin=args.plugin,
                                   n_procs=args.n_procs, progress=not args.quiet,
                                   sbatch_args=args.sbatch_args,
                                   poll_interval=args.poll_interval,
                                   plugin_args=args.plugin_args)
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
    """``graph [--out-dir DIR] [COMMAND ...]``: the pipeline of a command, not run.

    The pictures are drawn in a temporary folder and exported with the results
    folder's rules (:mod:`nipype_secondlevel.io.results_folder`)."""
    import tempfile

    from .io.results_folder import check_results_folder, export_results
    from .runtime.execution import quiet_nipype

    quiet_nipype()
    require_dot("graph")
    check_results_folder(args.out_dir, keep_option=None)
    command = build_parser().parse_args(args.pipeline or ["demo"])
    if command.command == "graph":
        raise bad_input("graph graph", "draws the pipeline of demo, localizer or run")
    command.argv = list(args.pipeline or ["demo"])
    workflow = build_workflow(command)
    with tempfile.TemporaryDirectory() as scratch:
        for style in ("colored", "hierarchical"):
            for fmt in ("png", "svg"):
                workflow.write_graph(dotfilename=str(Path(scratch) / f"workflow_{style}.dot"),
                                     graph2use=style, format=fmt, simple_form=True)
        pairs = [(str(path), path.name) for path in sorted(Path(scratch).iterdir())]
        written = export_results(args.out_dir.absolute(), pairs)
    for path in written:
        if not path.endswith(".dot"):
            print(path)
    return 0


def main(argv=None):
    """The command; exit status 0 done, 1 bad input or a failed node (one line), 2 a
    command line argparse refused (usage and one line), 130 interrupted (Ctrl-C), 143
    terminated (SIGTERM)."""
    pid = os.getpid()
    try:
        with one_line_warnings(PROG):
            argv = list(sys.argv[1:] if argv is None else argv)
            args = build_parser().parse_args(join_dash_values(argv))
            args.argv = argv
            if args.command == "graph":
                return draw_graph(args)
            return run(args)
    except (InputError, WorkflowFailed) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno != errno.ENAMETOOLONG:
            raise
        # A path the user gave (an option, a table's entry) with a name too long: one line.
        line = bad_input(err.filename, "a name in this path is longer than the file system "
                         "allows (File name too long)")
        print(f"{PROG}: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        if os.getpid() != pid:  # a forked worker unwinding a copy of this stack: be silent
            os._exit(128 + signum)
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {err}"
        print(f"{PROG}: {what}; rerun the same command to resume", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
