"""Running workflows on any nipype plugin: progress lines, failures in one line, and
which nodes ran or came from the cache.

A run passes nipype a plugin *object*: nipype's own plugin class, subclassed
(:class:`Runner`) to keep the graph it runs, heal the cache before the first node
(:mod:`.cache_repair`) and clean up when the run stops; MultiProc's workers (:mod:`.workers`) run
their nodes through :func:`.interrupts.run_in_worker`; the SLURM plugins are in
:mod:`.slurm`. Nothing of nipype is replaced or patched.
"""

import errno
import getpass
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..io.errors import InputError, InputWarning, bad_input
from ..spec import AUTO_PLUGIN
from . import interrupts
from .cache_repair import heal, run_times

#: Seconds between the local schedulers' polls (nipype's default, 2 s, dominates the
#: run time of a short workflow); batch plugins poll their queue every ``poll_interval``.
LOCAL_POLL_SECONDS = 0.02
#: Other names users give nipype's plugins.
ALIASES = {"htcondor": "Condor", "dagman": "CondorDAGMan"}


@dataclass
class RunSummary:
    """What a run did: nodes executed, nodes taken from the cache, wall time."""

    executed: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    seconds: float = 0.0


def plugin_class(name):
    """nipype's plugin class called ``name`` (any capitalisation; HTCondor is Condor;
    auto: see :func:`local_plugin`)."""
    from nipype.pipeline import plugins

    name = local_plugin(name)

    known = {n[:-len("Plugin")]: getattr(plugins, n) for n in dir(plugins)
             if n.endswith("Plugin") and n != "Plugin"}
    wanted = ALIASES.get(str(name).lower(), str(name)).lower()
    for known_name, cls in known.items():
        if known_name.lower() == wanted:
            return cls
    raise bad_input(f"--plugin {name}", "is not a nipype plugin; choose one of "
                    + ", ".join(sorted(known)))


def is_batch(cls):
    """True for plugins that submit jobs to a queue (SGE, PBS, LSF, SLURM, their Graph
    variants, HTCondor...), False for those running nodes on this machine."""
    from nipype.pipeline.plugins.base import SGELikeBatchManagerBase

    return issubclass(cls, SGELikeBatchManagerBase) or is_graph(cls)


def is_graph(cls):
    """True for plugins that submit the whole graph at once (SLURMGraph, SGEGraph...):
    they report no node's progress."""
    from nipype.pipeline.plugins.base import GraphPluginBase

    return issubclass(cls, GraphPluginBase)


def ran_since(node, start):
    """True when ``node``'s stored result was made at or after ``start`` (epoch s)."""
    try:
        begun, _ = run_times(node.result)
    except Exception:  # noqa: BLE001 - no result, or not readable: it did not run
        return False
    return begun is not None and begun >= datetime.fromtimestamp(start - 0.01).astimezone()


def user_name():
    """This process's user name (``uid<N>`` when the system has none for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def quiet_nipype():
    """nipype's log kept to warnings; no version check over the network (etelemetry, 5 s)."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from nipype import config, logging

    config.update_config({"logging": {"workflow_level": "WARNING", "interface_level": "WARNING"}})
    logging.update_logging(config)


class Progress:
    """Nipype status callback printing one line per node as it starts and ends (unless
    ``quiet``) and keeping the names of the nodes that failed (``failed``).

    MapNode items (which MultiProc and the batch plugins schedule one by one) are
    named ``<MapNode's full name>[i]`` and not counted."""

    def __init__(self, total, start, stream=None, quiet=False):
        self.total, self.start, self.quiet = total, start, quiet
        self.stream = stream or sys.stderr
        self.mapnodes = {}  # output folder of each MapNode of the graph: its full name
        self.started = {}
        self.failed = []
        self.done = 0

    def __getstate__(self):
        # MapNodes pickle the plugin arguments, this callback included, with
        # themselves: what cannot be pickled, or is large, stays behind.
        return {**self.__dict__, "stream": None, "mapnodes": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.stream = self.stream or sys.stderr

    def watch(self, graph):
        from nipype.pipeline.engine import MapNode

        self.mapnodes = {Path(n.output_dir()): n for n in graph.nodes()
                         if isinstance(n, MapNode)}

    def item_name(self, node):
        """``<MapNode>[i]`` for an item of a MapNode of the graph, else None."""
        folder = Path(node.output_dir())
        for mapnode_dir, mapnode in self.mapnodes.items():
            if folder.is_relative_to(mapnode_dir) and folder != mapnode_dir:
                return f"{mapnode.fullname}[{node.name.removeprefix('_' + mapnode.name)}]"
        return None

    def __call__(self, node, status):
        interrupts.raise_if_stopped()  # (no line once the run is interrupted)
        item = self.item_name(node)
        name = item or node.fullname
        if status == "exception":
            self.failed.append(name)
        if self.quiet:
            return
        if status == "start":
            self.started[name] = time.time()
            # The Linear plugin also announces nodes it will take from the cache.
            if not node.is_cached()[0] or node.interface.always_run:
                print(f"        {name}: running", file=self.stream, flush=True)
            return
        if status == "exception":
            state = "FAILED"
        elif ran_since(node, self.start):
            state = f"done in {max(0.0, time.time() - self.started.get(name, time.time())):.1f} s"
        else:
            state = "cached"
        if item:
            print(f"        {name}: {state}", file=self.stream, flush=True)
            return
        self.done += 1
        print(f"[{self.done}/{self.total}] {name}: {state}", file=self.stream, flush=True)


class Runner:
    """Mixed into a nipype plugin class: keeps the graph it runs, heals the cache
    before the first node, and cleans up (:meth:`stop`) when the run stops.

    ``work_dir`` is the work folder, ``say(node, why)`` is told of each node whose
    cached result is not used, ``batch_dir`` is where batch plugins write their jobs'
    files (``<work folder>/<workflow>/batch``), ``poll`` the seconds between queue polls.
    """

    def __init__(self, plugin_args=None, *, work_dir, say=None, batch_dir=None, poll=0.5):
        self.work_dir, self.say, self.batch_dir, self.poll = work_dir, say, batch_dir, poll
        self.graph = None
        super().__init__(plugin_args=plugin_args)

    def run(self, graph, config, updatehash=False):
        self.graph = graph
        if self.plugin_args.get("status_callback") is not None:
            self.plugin_args["status_callback"].watch(graph)
        interrupts.raise_if_stopped()
        heal(graph, self.work_dir, self.say)
        self.prepare(graph)
        try:
            return super().run(graph, config, updatehash=updatehash)
        except BaseException as err:
            self.stop(interrupted=isinstance(err, KeyboardInterrupt))
            raise

    def prepare(self, graph):
        """Set the graph's nodes up for this plugin (none here)."""

    def stop(self, interrupted):
        """The run stops (a failure, or an interrupt): clean up (nothing here)."""

    def finish(self):
        """Called when ``workflow.run`` returned: wait for what it left running."""

    def failure(self, err, crash_dir, since):
        """The WorkflowFailed of a failed run."""
        failed = getattr(self.plugin_args.get("status_callback"), "failed", None)
        return WorkflowFailed.from_crash_dir(crash_dir, since, err,
                                             failed[0] if failed else None)


def make_runner(plugin, plugin_args, **context):
    """An instance of nipype's plugin ``plugin`` with our :class:`Runner` mixed in
    (``context``: see :class:`Runner`)."""
    from . import slurm, workers

    base = plugin_class(plugin)
    mixin = {"MultiProcPlugin": workers.MultiProcRunner, "SLURMPlugin": slurm.SlurmRunner,
             "SLURMGraphPlugin": slurm.SlurmGraphRunner}.get(base.__name__, Runner)
    return type(base.__name__, (mixin, base), {})(plugin_args, **context)


def count_nodes(workflow):
    """Number of nodes that will be scheduled (identity nodes are removed by nipype)."""
    from nipype.interfaces.utility import IdentityInterface

    return sum(not isinstance(workflow.get_node(name).interface, IdentityInterface)
               for name in workflow.list_node_names())


def configure(workflow, work_dir, poll):
    """Set the work folder, crash folder and scheduler settings of ``workflow``."""
    work_dir = Path(work_dir).absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    workflow.base_dir = str(work_dir)
    workflow.config["execution"].update({
        "crashdump_dir": str(work_dir / "crash"),
        "crashfile_format": "txt",
        "poll_sleep_duration": poll,
        "stop_on_first_crash": True,
        "create_report": False,
        # Tables written by a node name files that no connection carries.
        "remove_unnecessary_outputs": False,
    })


def usable_cpus():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_plugin(name):
    """``name``, or for ``auto`` (--plugin's default) MultiProc on a machine with more
    than one CPU for this run, else Linear."""
    if str(name).lower() != AUTO_PLUGIN:
        return name
    return "MultiProc" if usable_cpus() > 1 else "Linear"


def default_chunks(plugin, n_procs):
    """The most permutation chunks of a test whose --n-chunks is not given: with MultiProc,
    one per process (--n-procs, else 2), at most the CPUs; else 1 (fewer when the test is
    too short to share: :func:`~..stats.permutation.worthwhile_chunks`; results do not
    depend on it)."""
    if str(local_plugin(plugin)).lower() != "multiproc":
        return 1
    return min(n_procs or 2, usable_cpus())


def plugin_arguments(cls, plugin_args, n_procs, sbatch_args):
    """The plugin arguments of a run: the user's, MultiProc's processes (capped at the
    CPUs, with a warning), the SLURM plugins' sbatch options."""
    args = dict(plugin_args or {})
    if cls.__name__ == "MultiProcPlugin":
        cpus = usable_cpus()
        asked = args.get("n_procs", n_procs) or cpus
        if asked > cpus:
            warnings.warn(f"--n-procs {asked} is more than the {cpus} CPUs this run may use: "
                          f"{cpus} processes", InputWarning, stacklevel=3)
        args["n_procs"] = min(asked, cpus)
        args.setdefault("mp_context", "fork")  # workers share what the run imported
    if cls.__name__.startswith("SLURM"):
        args["sbatch_args"] = " ".join(
            a for a in (args.get("sbatch_args") or "", sbatch_args or "") if a).strip()
    return args


def run_workflow(workflow, work_dir, plugin="Linear", n_procs=None, progress=True,
                 sbatch_args="", poll_interval=0.5, plugin_args=None):
    """Run ``workflow`` in ``work_dir`` and say which nodes ran.

    Parameters
    ----------
    workflow : nipype Workflow
    work_dir : path
        Cache folder: nodes whose inputs did not change are not run again. On a
        cluster it must be on a filesystem the compute nodes share.
    plugin : str
        Any nipype plugin: Linear, MultiProc, SLURM, SLURMGraph, SGE, PBS, LSF,
        HTCondor (Condor)... (any capitalisation).
    n_procs : int or None
        Processes for MultiProc (default: all cores; capped at them).
    progress : bool
        Print one line per node on stderr (the Graph plugins submit all jobs at once
        and report only at the end).
    sbatch_args : str
        sbatch options for every job (SLURM plugins), e.g. "--partition=short --time=60".
        Nodes' ``mem_gb`` and ``n_procs`` hints are added per job.
    poll_interval : float
        Seconds between queue polls (batch plugins).
    plugin_args : dict or None
        Further plugin arguments, passed through to nipype's plugin.

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
    interrupts.Interrupted
        On SIGINT (Ctrl-C) or SIGTERM: nodes stopped, SLURM jobs cancelled, and the
        crash files nipype wrote for it removed.
    """
    from . import workers

    cls = plugin_class(plugin)
    configure(workflow, work_dir, poll_interval if is_batch(cls) else LOCAL_POLL_SECONDS)
    quiet_nipype()
    if is_batch(cls) and not os.environ.get("LOGNAME"):  # their job names need it
        os.environ["LOGNAME"] = user_name()
    start = time.time()
    args = plugin_arguments(cls, plugin_args, n_procs, sbatch_args)
    crash_dir = workflow.config["execution"]["crashdump_dir"]
    work_dir = workflow.base_dir

    def say(node, why):
        if progress:
            print(f"        {node.fullname}: cached result not used ({why}); it runs again",
                  file=sys.stderr, flush=True)

    with interrupts.StopOnSignal() as guard, \
            interrupts.removing_files_made_after_interrupt(crash_dir, guard):
        if not is_graph(cls):
            args["status_callback"] = Progress(count_nodes(workflow), start, quiet=not progress)
        runner = make_runner(plugin, args, work_dir=work_dir, say=say, poll=poll_interval,
                             batch_dir=Path(work_dir) / workflow.name / "batch")
        try:
            with workers.frozen_heap(cls.__name__ == "MultiProcPlugin"):
                graph = workflow.run(plugin=runner)
            runner.finish()
        except KeyboardInterrupt:
            runner.stop(interrupted=True)
            raise
        except Exception as err:
            if guard.interrupted:  # nipype made a failed node of the interrupt
                raise interrupts.Interrupted(guard.signum) from None
            if isinstance(err, (WorkflowFailed, InputError)):  # said already
                raise
            raise runner.failure(err, crash_dir, start) from err
    summary = RunSummary(seconds=time.time() - start)
    for node in graph.nodes():
        (summary.executed if ran_since(node, start) else summary.cached).append(node.fullname)
    return summary


class WorkflowFailed(RuntimeError):
    """A node failed; the message gives its error in one line and where the details are."""

    @classmethod
    def from_crash_dir(cls, crash_dir, since, err, failed_node=None):
        """From the first crash file written since ``since`` (else ``err``); the node's
        name from it, else ``failed_node``."""
        crashes = new_crash_files(crash_dir, since)
        node, error = read_crash_file(crashes[0]) if crashes else (None, None)
        node = node or failed_node
        if error is None:  # no crash file, or an empty one (e.g. on a full disk)
            error = innermost_error(f"{type(err).__name__}: {err}")
        message = failure_message(node, *split_error_line(error),
                                  work_dir=Path(crash_dir).parent)
        if crashes and crashes[0].stat().st_size:
            message += f" (details: {crashes[0]})"
        return cls(message)


def new_crash_files(crash_dir, since):
    """The files of ``crash_dir`` written since ``since``, oldest first."""
    crash_dir = Path(crash_dir)
    if not crash_dir.is_dir():
        return []
    return sorted((p for p in crash_dir.iterdir() if p.stat().st_mtime >= since - 1),
                  key=lambda p: p.stat().st_mtime)


def read_crash_file(path):
    """(node full name or None, the innermost error line or None) of a text crash
    file: ``Node: <full name>``, ``Working directory: ...``, the inputs, the traceback."""
    text = Path(path).read_text(errors="replace")
    first = text.partition("\n")[0]
    return (first[len("Node: "):] if first.startswith("Node: ") else None), innermost_error(text)


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
