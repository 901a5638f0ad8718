"""Running workflows: plugins, progress lines, and which nodes ran or came from the cache."""

import errno
import gc
import importlib
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import nipype_seam
from .cache_repair import repair_cache
from .interrupts import InterruptGuard

LOCAL_PLUGINS = ("Linear", "MultiProc")
CLUSTER_PLUGINS = ("SLURM", "SLURMGraph")
PLUGINS = LOCAL_PLUGINS + CLUSTER_PLUGINS
#: Seconds between the MultiProc scheduler's polls (nipype's default, 2 s,
#: dominates the run time of a short workflow).
LOCAL_POLL_SECONDS = 0.02


@dataclass
class RunSummary:
    """What a run did: nodes executed, nodes taken from the cache, wall time."""

    executed: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    seconds: float = 0.0


def node_result_file(node):
    """The result file nipype writes when a node has executed."""
    return Path(node.output_dir()) / f"result_{node.name}.pklz"


def node_ran_since(node, start):
    """True when ``node`` wrote its result at or after ``start`` (epoch seconds)."""
    result = node_result_file(node)
    return result.exists() and result.stat().st_mtime >= start - 0.01


def quiet_nipype():
    """Keep nipype's own log to warnings; our progress lines say what happens."""
    from nipype import config, logging

    config.update_config({"logging": {"workflow_level": "WARNING", "interface_level": "WARNING"}})
    logging.update_logging(config)


class Progress:
    """Nipype status callback printing one line per node as it finishes."""

    def __init__(self, total, start, stream=None, guard=None, base_dir=None):
        self.total = total
        self.start = start
        self.base_dir = base_dir  # the work folder: names of MapNode items
        self.guard = guard  # no lines once the run is interrupted
        self.stream = stream or sys.stderr
        self.started = {}
        self.done = 0

    def __getstate__(self):
        # MapNodes pickle the plugin arguments, this callback included, with
        # themselves; the stream (sys.stderr) cannot be pickled and is not needed there.
        state = dict(self.__dict__)
        if state.get("stream") is sys.stderr:
            state["stream"] = None
        state["guard"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.stream is None:
            self.stream = sys.stderr

    def __call__(self, node, status):
        if self.guard is not None and self.guard.interrupted:
            return
        item = self.base_dir and map_item_name(node, self.base_dir)
        name = item or node.fullname
        if status == "start":
            self.started[name] = time.time()
            # The Linear plugin also announces nodes it will take from the cache.
            if not node.is_cached()[0] or node.interface.always_run:
                print(f"        {name}: running", file=self.stream, flush=True)
            return
        if status == "exception":
            state = "FAILED"
        elif node_ran_since(node, self.start):
            seconds = max(0.0, time.time() - self.started.get(name, time.time()))
            state = f"done in {seconds:.1f} s"
        else:
            state = "cached"
        if item:  # MultiProc reports a MapNode's items too: they are not counted
            print(f"        {name}: {state}", file=self.stream, flush=True)
            return
        self.done += 1
        print(f"[{self.done}/{self.total}] {name}: {state}", file=self.stream, flush=True)


def map_item_name(node, base_dir):
    """``<MapNode's full name>[i]`` for an item of a MapNode (nipype names it
    ``_<name><i>``, in ``<MapNode's folder>/mapflow/``), None for any other node."""
    folder = Path(node.output_dir())
    mapnode = folder.parent.parent
    prefix = f"_{mapnode.name}"
    if (folder.parent.name != "mapflow" or not folder.name.startswith(prefix)
            or not mapnode.is_relative_to(base_dir)):
        return None
    return ".".join(mapnode.relative_to(base_dir).parts) + f"[{folder.name[len(prefix):]}]"


def count_nodes(workflow):
    """Number of nodes that will be scheduled (identity nodes are removed by nipype)."""
    from nipype.interfaces.utility import IdentityInterface

    return sum(
        not isinstance(n.interface, IdentityInterface) for n in nipype_seam.all_nodes(workflow)
    )


def configure(workflow, work_dir):
    """Set the work folder, crash folder and scheduler settings of ``workflow``."""
    work_dir = Path(work_dir).absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    workflow.base_dir = str(work_dir)
    workflow.config["execution"].update(
        {
            "crashdump_dir": str(work_dir / "crash"),
            "crashfile_format": "txt",
            "poll_sleep_duration": LOCAL_POLL_SECONDS,
            "stop_on_first_crash": True,
            "create_report": False,
            # Tables written by a node name files that no connection carries.
            "remove_unnecessary_outputs": False,
        }
    )


def run_workflow(
    workflow,
    work_dir,
    plugin="Linear",
    n_procs=None,
    progress=True,
    sbatch_args="",
    poll_interval=0.5,
    plugin_args=None,
):
    """Run ``workflow`` in ``work_dir`` and say which nodes ran.

    Parameters
    ----------
    workflow : nipype Workflow
    work_dir : path
        Cache folder: nodes whose inputs did not change are not run again. On a
        cluster it must be on a filesystem the compute nodes share.
    plugin : {"Linear", "MultiProc", "SLURM", "SLURMGraph"}
    n_procs : int or None
        Processes for MultiProc (default: all cores).
    progress : bool
        Print one line per node on stderr (SLURMGraph submits all jobs at once
        and reports only at the end).
    sbatch_args : str
        sbatch options for every job (SLURM plugins), e.g. "--partition=short --time=60".
        Nodes' ``mem_gb`` and ``n_procs`` hints are added per job.
    poll_interval : float
        Seconds between queue polls (SLURM plugins).
    plugin_args : dict or None
        Further plugin arguments, passed through to Nipype.

    Returns
    -------
    RunSummary

    Raises
    ------
    WorkflowFailed
        With the failed node's error line (and its name unless the error is an
        :class:`~nipype_secondlevel.io.errors.InputError`) and crash file; on SLURM,
        one line per failed node with its log and crash file, and the nodes
        that did not run because of it.
    KeyboardInterrupt
        On Ctrl-C (Linear, MultiProc): the crash files nipype wrote for it are
        removed (see :class:`~nipype_secondlevel.runtime.interrupts.InterruptGuard`).
    """
    if plugin not in PLUGINS:
        raise ValueError(f"plugin must be one of {', '.join(PLUGINS)}, got {plugin!r}")
    configure(workflow, work_dir)
    quiet_nipype()
    # Results whose files were deleted or changed since: nipype would trust them.
    for node_dir, why in repair_cache(Path(workflow.base_dir) / workflow.name,
                                      workflow.base_dir).items():
        if progress:
            name = ".".join(node_dir.relative_to(workflow.base_dir).parts)
            print(f"        {name}: cached result not used ({why}); it runs again",
                  file=sys.stderr, flush=True)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    start = time.time()
    args = dict(plugin_args or {})
    if plugin == "MultiProc":
        args.setdefault("n_procs", n_procs or os.cpu_count())
    crash_dir = Path(workflow.config["execution"]["crashdump_dir"])
    guard = InterruptGuard(crash_dir)
    if progress and plugin != "SLURMGraph":
        args["status_callback"] = Progress(count_nodes(workflow), start, guard=guard,
                                           base_dir=Path(workflow.base_dir))
    if plugin in CLUSTER_PLUGINS:
        graph = run_on_cluster(workflow, plugin, sbatch_args, poll_interval, args)
    else:
        with guard:
            try:
                with nipype_seam.patched_for_run(plugin), frozen_heap(plugin == "MultiProc"):
                    graph = workflow.run(plugin=plugin, plugin_args=args)
            except Exception as err:
                if guard.interrupted:  # nipype made a failed node of the interrupt
                    raise KeyboardInterrupt from None
                raise WorkflowFailed.from_crash_dir(crash_dir, start, err) from err
    summary = RunSummary(seconds=time.time() - start)
    for node in graph.nodes():
        (summary.executed if node_ran_since(node, start) else summary.cached).append(
            node.fullname
        )
    return summary


#: Libraries that nodes import as they run (pictures, nilearn's reporting).
FORKED_IMPORTS = ("matplotlib.pyplot", "nilearn.plotting", "nilearn.glm", "nilearn.reporting")


@contextmanager
def frozen_heap(freeze=True):
    """Objects made so far (modules, the workflow) left out of garbage collections.

    nipype's MultiProc scheduler runs a full ``gc.collect()`` at every poll while
    nodes run (every 20 ms here): over the heap of numpy, scipy and nipype that
    was most of a run's CPU time. Frozen objects are not scanned (``gc.freeze``);
    what the run makes is still collected. The libraries the nodes import when
    they run (:data:`FORKED_IMPORTS`) are imported first, once: the forked
    workers share them instead of importing them each.
    """
    if not freeze:
        yield
        return
    import matplotlib

    matplotlib.use("Agg")  # pictures are written to files, never shown
    for name in FORKED_IMPORTS:
        importlib.import_module(name)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_on_cluster(workflow, plugin, sbatch_args, poll_interval, plugin_args):
    """Run on SLURM: per-node resources, the plugins' pitfalls handled, and
    (SLURMGraph) waiting until the submitted jobs are done. Returns the graph."""
    from . import slurm

    try:
        args = slurm.prepare_slurm_run(
            workflow, plugin, sbatch_args=sbatch_args, poll_interval=poll_interval,
            plugin_args=plugin_args, gather_quick_nodes=True,
        )
    except (RuntimeError, ValueError) as err:
        raise WorkflowFailed(f"{plugin}: {err}") from err
    try:
        runner = nipype_seam.grouped_slurmgraph(args) if plugin == "SLURMGraph" else plugin
        with nipype_seam.patched_for_run(plugin):  # SLURMGraph: a correct up-to-date check
            graph = workflow.run(plugin=runner, plugin_args=args)
        if plugin == "SLURMGraph":
            slurm.wait_for_slurmgraph(workflow, poll_interval=poll_interval)
    except slurm.SlurmRunError as err:
        raise WorkflowFailed(str(err)) from err
    except RuntimeError as err:
        raise WorkflowFailed(str(slurm.slurm_run_error(workflow, err))) from err
    return graph


class WorkflowFailed(RuntimeError):
    """A node failed; the message gives its error in one line and where the details are."""

    @classmethod
    def from_crash_dir(cls, crash_dir, since, err):
        crash_dir = Path(crash_dir)
        crashes = sorted(
            (p for p in crash_dir.glob("crash-*") if p.stat().st_mtime >= since - 1),
            key=lambda p: p.stat().st_mtime,
        ) if crash_dir.is_dir() else []
        node, error = read_crash_file(crashes[0]) if crashes else (None, None)
        if error is None:  # no crash file, or an empty one (e.g. on a full disk)
            error = innermost_error(f"{type(err).__name__}: {err}")
            node = node_of_crash_name(crashes[0].name) if crashes else None
        message = failure_message(node, *split_error_line(error), work_dir=crash_dir.parent)
        if crashes and crashes[0].stat().st_size:
            message += f" (details: {crashes[0]})"
        return cls(message)


#: The last line of a traceback: ``[module.]ExceptionClass: message``.
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<cls>[A-Za-z_]\w*(?:Error|Exception|Exit|"
                         r"Interrupt|Failed))(?::\s*(?P<msg>.*))?$")
#: An OSError's message: ``[Errno N] strerror[: 'filename'[ -> 'filename2']]``.
_OS_ERROR = re.compile(r"^\[Errno (?P<errno>\d+)\] (?P<strerror>[^:]+)"
                       r"(?:: '(?P<path>[^']*)'(?: -> '(?P<path2>[^']*)')?)?")
#: errno values that mean "this folder cannot hold the run's files".
_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def split_error_line(line):
    """(exception class name, message) of a traceback's error line."""
    match = _ERROR_LINE.match(line.strip())
    if not match:
        return None, line.strip()
    return match.group("cls"), (match.group("msg") or "").strip()


def failure_message(node, cls, message, work_dir=None):
    """The one line of a failed run: a user's problem (InputError) as it was raised;
    a folder that cannot be written (full, read-only) named; anything else with the
    failed node and the error's class."""
    if cls is not None and cls.endswith("InputError"):
        return message
    os_error = _OS_ERROR.match(message) if cls is not None else None
    if os_error and int(os_error["errno"]) in _UNWRITABLE:
        path = os_error["path2"] or os_error["path"]  # a copy's destination
        where = (f"work folder {work_dir}" if work_dir and (
            not path or Path(path).is_relative_to(work_dir)) else path)
        if where:
            during = f" (node {node})" if node else ""
            return f"{where}: cannot be written: {os_error['strerror']}{during}"
    what = f"{cls}: {message}" if cls else message
    return f"node {node} failed: {what}" if node else f"workflow failed: {what}"


def innermost_error(text):
    """The error line of a (possibly nested) traceback, not nipype's wrapping
    NodeExecutionError; None if there is none."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR_LINE.match(ln)]
    inner = [ln for ln in errors if not split_error_line(ln)[0].startswith("NodeExecution")]
    return (inner or errors or lines or [None])[-1]


def node_of_crash_name(name):
    """The node's name in a crash file's name: crash-<time>-<user>-<node>-<uuid>.<ext>."""
    match = re.match(r"crash-\d{8}-\d{6}-[^-]+-(?P<node>.+)-" + nipype_seam.CRASH_UUID + r"\.",
                     name)
    return match["node"] if match else None


def read_crash_file(path):
    """(node name, the innermost error line or None) from a nipype crash file (txt or pklz)."""
    path = Path(path)
    if path.suffix == ".pklz":
        crash, text = nipype_seam.crash_of_pickle(str(path))
        node = path.name if crash is None else str(crash)
    else:
        text = path.read_text(errors="replace")
        node, _ = nipype_seam.text_crash_header(path)
        if node == path.name:  # no "Node: " line
            node = node_of_crash_name(path.name) or path.name
    return node, innermost_error(text)
