"""Layer 4: the ``nipype-secondlevel`` command: the options checked, the plan made, the run.

The command line is generated from the spec (:mod:`nipype_secondlevel.cli_options`);
every option is checked against the others before anything else
(:func:`nipype_secondlevel.spec.resolve`), then the plan reads the inputs once and
decides the analysis (:mod:`nipype_secondlevel.design.plan`), then the workflow is
built from the plan and run.
"""

import errno
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

from .cli_model import resolve_with_model
from .cli_options import PROG, build_parser, given_options, join_dash_values
from .io.errors import InputError, bad_input, escaped
from .io.private import remove_private_folders
from .runtime.console import one_line_warnings, stopped_line
from .runtime.execution import WorkflowFailed, default_chunks  # (imports no nipype)
from .spec import OptionError, option, resolve

#: Entity filters of ``run --bids-dir``: option -> pybids entity.
BIDS_FILTERS = {"task": "task", "space": "space", "session": "session",
                "bids_contrast": "contrast"}


def require_dot(where):
    """Refuse ``where`` (an option or command drawing a graph) without Graphviz's dot."""
    if shutil.which("dot") is None:
        raise bad_input(where, "the 'dot' program of Graphviz is not installed "
                        "(e.g. apt-get install graphviz)")


def participants_dir(values):
    """The folder of the participants.tsv of ``--bids-dir``: ``--raw-dir``, else none
    (the derivatives folder's own), else that of DATASET when DERIV is
    DATASET/derivatives/NAME and it has one."""
    deriv = Path(values["bids_dir"]).absolute()
    raw = values["raw_dir"]
    if raw is None and not (deriv / "participants.tsv").exists() \
            and deriv.parent.name == "derivatives" \
            and (deriv.parent.parent / "participants.tsv").exists():
        raw = deriv.parent.parent  # DATASET/derivatives/NAME: the raw dataset's table
    return raw


def write_work_table(table, folder, source):
    """Write an inputs table into ``folder`` of the work folder, as ``inputs.tsv``
    (rewritten only when it changed, so that the cache holds); returns its path."""
    import filecmp
    import tempfile

    from .io.tables import write_inputs_table

    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "inputs.tsv"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        written = Path(write_inputs_table(table, Path(scratch) / "inputs.tsv", source))
        for new in (written, written.with_suffix(".json")):
            old = folder / new.name
            if not (old.exists() and filecmp.cmp(new, old, shallow=False)):
                os.replace(new, old)
    return target


def bids_table(values):
    """Build the inputs table of ``--bids-dir`` (pybids) and write it into the work folder
    (:func:`write_work_table`); returns its path."""
    from .design.bids import bids_inputs_table

    filters = {entity: values[name] for name, entity in BIDS_FILTERS.items() if values[name]}
    for entity, value in values["bids_filter"] or []:
        filters.setdefault(entity, []).append(value)
    deriv = Path(values["bids_dir"]).absolute()
    raw = participants_dir(values)
    table = bids_inputs_table(deriv, filters, variances=values["estimation"] != "ols",
                              raw_dir=raw, group_column=values["group_column"],
                              condition_entity=values["condition_entity"])
    source = {"BIDSDir": str(deriv), "Filters": filters,
              "ParticipantsFrom": str(Path(raw or deriv).absolute()),
              "GroupColumn": values["group_column"]}
    return write_work_table(table, Path(values["work_dir"]) / "bids_inputs", source)


def first_level_table(values):
    """Build the inputs table of ``--feat-dirs`` or ``--spm-dirs`` and write it into the
    work folder (:func:`write_work_table`); returns its path."""
    if values["feat_dirs"] is not None:
        from .design.fsl import feat_inputs_table

        table = feat_inputs_table(values["feat_dirs"], values["cope"])
        source = {"FEATDirs": values["feat_dirs"], "Cope": values["cope"]}
    else:
        from .design.spm import spm_inputs_table

        table = spm_inputs_table(values["spm_dirs"], values["con"],
                                 variances=values["estimation"] != "ols")
        source = {"SPMDirs": values["spm_dirs"], "Con": values["con"]}
    return write_work_table(table, Path(values["work_dir"]) / "first_level_inputs", source)


def make_plan(command, given, values):
    """The plan of ``command`` from the options given on the command line."""
    from .design.plan import plan_analysis
    from .workflows import plan_demo, plan_localizer

    results = {k: v for k, v in given.items() if option(k, command).results}
    results["parallel"] = default_chunks(values["plugin"], values["n_procs"])
    if command == "demo":
        return plan_demo(**results)
    if command == "localizer":
        return plan_localizer(**results)
    if values["bids_dir"] is not None:
        results["inputs_table"] = bids_table(values)
    elif values["feat_dirs"] is not None or values["spm_dirs"] is not None:
        results["inputs_table"] = first_level_table(values)
    return plan_analysis(**results)


def build_workflow(args):
    """The workflow of a parsed command line (its options checked, its plan made)."""
    from .runtime.execution import quiet_nipype
    from .workflows import init_demo_wf, init_group_pipeline_wf, init_localizer_wf

    quiet_nipype()  # before the first interface is made

    given = given_options(args)
    values = resolve_with_model(given, args.command)
    if values["graph"]:
        require_dot("--graph")
    data_dir = values.get("data_dir")
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise bad_input(f"--data-dir {data_dir}", "is not a folder")
    out_dir = str(Path(values["out_dir"]).absolute())
    # The command line, as typed, goes into the report and dataset_description.json.
    pipeline = {"command": shlex.join([PROG, *getattr(args, "argv", [])]),
                "mem_gb": values["mem_gb"], "graph": values["graph"]}
    if values.get("model") is not None:
        from .cli_model import model_plans
        from .workflows import init_model_pipeline_wf

        return init_model_pipeline_wf(model_plans(given, values), out_dir,
                                      Path(values["model"]).absolute(),
                                      **pipeline)
    plan = make_plan(args.command, given, values)
    if args.command == "demo":
        return init_demo_wf(out_dir, plan, **pipeline)
    if args.command == "localizer":
        return init_localizer_wf(out_dir, plan, data_dir=data_dir, **pipeline)
    return init_group_pipeline_wf(plan, out_dir, **pipeline)


def run(args):
    from .io.progress import progress_lines
    from .io.results_folder import (
        check_results_folder,
        check_work_outside,
        check_writable_folder,
        read_manifest,
    )
    from .runtime.console import nipype_console_off
    from .runtime.execution import run_workflow
    from .runtime.interrupts import StopOnSignal
    from .runtime.locking import FolderLock, results_lock_path

    values = resolve_with_model(given_options(args), args.command)  # all checked first
    work_dir, out_dir = Path(values["work_dir"]), Path(values["out_dir"])
    check_writable_folder(work_dir, "--work-dir")
    given = [values.get(o) for o in ("inputs_table", "design_file", "mask", "reference_map")]
    model = values.get("model") is not None
    if model:  # the model's tables go into the work folder before its analyses are known
        check_work_outside(out_dir, work_dir)
    else:
        check_results_folder(out_dir, work_dir, replace=values["replace_results"],
                             inputs=[path for path in given if path is not None])
    workflow = build_workflow(args)
    sinks = [workflow.get_node(name) for name in workflow.list_node_names()
             if name.split(".")[-1] == "sink"]
    if model:  # one results subfolder per analysis, named once the model is read
        check_results_folder(out_dir, work_dir, replace=values["replace_results"],
                             inputs=[f for sink in sinks for f in sink.inputs.input_files],
                             subfolders=[Path(sink.inputs.out_dir).name for sink in sinks])
    created = not out_dir.exists()
    try:
        # One run per work folder and per results folder (their locks are released by
        # the kernel when a run is killed). A failed node is one line: nipype's own log
        # of it stays in the crash file.
        with (StopOnSignal(), FolderLock(work_dir, wait=values["wait"]),
              FolderLock(out_dir, "results folder", path=results_lock_path(out_dir),
                         wait=values["wait"]),
              nipype_console_off(), progress_lines(not values["quiet"])):
            summary = run_workflow(workflow, work_dir, plugin=values["plugin"],
                                   plugin_args=values["plugin_args"],
                                   n_procs=values["n_procs"], progress=not values["quiet"],
                                   sbatch_args=values["sbatch_args"],
                                   poll_interval=values["poll_interval"])
    finally:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
    out = out_dir.absolute()
    print(f"{len(summary.executed)} node(s) executed, {len(summary.cached)} from the cache, "
          f"in {summary.seconds:.1f} s")
    print(f"Cache in {work_dir.absolute()} (the same command reruns only what changed)")
    print(f"Results in {out}:")
    for folder in sorted({Path(sink.inputs.out_dir) for sink in sinks}):
        inside = "" if folder == out else f"{folder.relative_to(out)}/"
        for name in read_manifest(folder):
            print(f"  {inside}{name}")
    return 0


def draw_graph(args):
    """``graph [--out-dir DIR] [COMMAND ...]``: the pipeline of a command, not run.

    The pictures are drawn in a temporary folder and exported with the results
    folder's rules (:mod:`nipype_secondlevel.io.results_folder`)."""
    import tempfile

    from .io.results_folder import check_results_folder, export_results

    require_dot("graph")
    values = resolve(given_options(args), "graph")
    check_results_folder(values["out_dir"], keep_option=None)
    pipeline = values["pipeline"] or ["demo"]
    command = build_parser().parse_args(join_dash_values(pipeline))
    if command.command == "graph":
        raise bad_input("graph graph", "draws the pipeline of demo, localizer or run")
    command.argv = list(pipeline)
    workflow = build_workflow(command)
    with tempfile.TemporaryDirectory() as scratch:
        for style in ("colored", "hierarchical"):
            for fmt in ("png", "svg"):
                workflow.write_graph(dotfilename=str(Path(scratch) / f"workflow_{style}.dot"),
                                     graph2use=style, format=fmt, simple_form=True)
        pairs = [(str(path), path.name) for path in sorted(Path(scratch).iterdir())]
        written = export_results(Path(values["out_dir"]).absolute(), pairs)
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
    except OptionError as err:  # (the spec imports nothing: its values are escaped here)
        print(f"{PROG}: error: {escaped(str(err))}", file=sys.stderr)
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
        remove_private_folders()  # what the writers it stopped were writing
        if os.getpid() != pid:  # a forked worker unwinding a copy of this stack: be silent
            os._exit(128 + signum)
        print(stopped_line(PROG, signum), file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
