"""The one module that reaches into nipype's internals.

Everything here depends on how nipype works inside, not on its documented API:
private attributes of workflows and nodes, the names of the files nipype's batch
plugins write, the script SLURMGraph writes, the content of its pickles, and two
nipype functions we replace for the time of one run:

- ``slurmgraph.node_completed_status`` (SLURMGraph's ``dont_resubmit_completed_jobs``
  check) counts an *outdated* cache as done: change a parameter, rerun, and
  SLURMGraph submits nothing and keeps the old results. During a SLURMGraph run it
  asks ``node.is_cached()`` for a cache that is present and up to date instead;
- ``multiproc.process_initializer`` (MultiProc's worker set-up) also asks the kernel
  to end the worker when the run's process dies (``PR_SET_PDEATHSIG``), so killing
  the parent of a MultiProc run leaves no orphan holding the work folder's lock.

:func:`patched_for_run` applies what a plugin needs and restores nipype's own
functions when the run ends, however it ends. :func:`check_nipype_version` refuses
a nipype the tests have not covered (see ``TESTED_NIPYPE``).
"""

import ctypes
import os
import re
import shlex
import signal
import sys
from contextlib import contextmanager, nullcontext
from copy import deepcopy

from ..io.errors import InputError

#: nipype versions (major, minor) the tests cover; setup.cfg pins the same range.
TESTED_NIPYPE = ((1, 11),)
#: Environment variable that lets a run go ahead on an untested nipype.
ALLOW_UNTESTED = "NIPYPE_SECONDLEVEL_UNTESTED_NIPYPE"
#: nipype's batch files: <prefix><YYYYmmdd_HHMMSS>_<hierarchy>_<id><ext>
#: (nipype.pipeline.plugins.tools.create_pyscript).
_STAMP = r"\d{8}_\d{6}_"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: node.plugin_args key marking a quick node (nipype passes unknown keys through)
QUICK = "nipype_secondlevel_quick"
#: beside a grouped job's script: the node pickles it runs, one a line
GROUP_SUFFIX = ".nodes"


class UntestedNipype(InputError):
    """The installed nipype is outside the range this package was tested with."""


def nipype_version():
    """(major, minor) of the installed nipype."""
    import nipype

    major, minor = (re.findall(r"\d+", nipype.__version__) + ["0", "0"])[:2]
    return int(major), int(minor)


def check_nipype_version():
    """Refuse a nipype whose internals we have not tested (unless ALLOW_UNTESTED=1)."""
    import nipype

    if nipype_version() in TESTED_NIPYPE or os.environ.get(ALLOW_UNTESTED) == "1":
        return
    tested = ", ".join(f"{a}.{b}.x" for a, b in TESTED_NIPYPE)
    raise UntestedNipype(
        f"nipype {nipype.__version__} is installed, but nipype-secondlevel relies on "
        f"internals of nipype {tested} only (runtime/nipype_seam.py): install a tested "
        f"version (pip install 'nipype>={TESTED_NIPYPE[0][0]}.{TESTED_NIPYPE[0][1]},"
        f"<{TESTED_NIPYPE[-1][0]}.{TESTED_NIPYPE[-1][1] + 1}') or set {ALLOW_UNTESTED}=1 "
        "to try it anyway"
    )


# ----------------------------------------------------------------- workflows and nodes
def all_nodes(workflow):
    """Every node of ``workflow``, nested workflows included."""
    return workflow._get_all_nodes()


def node_id(node):
    """A node's name inside its workflow (nipype's ``_id``; MapNode items add a suffix)."""
    return node._id


def node_hierarchy(node):
    """Dotted names of the workflows holding ``node`` ('' at the top level)."""
    return node._hierarchy or ""


def exec_graph(workflow):
    """The expanded graph ``workflow.run`` executes, with base_dir and config set."""
    from nipype import config as nipype_config
    from nipype.pipeline.engine.utils import generate_expanded_graph, merge_dict

    graph = generate_expanded_graph(deepcopy(workflow._create_flat_graph()))
    cfg = merge_dict(deepcopy(nipype_config._sections), workflow.config)
    for node in graph.nodes():
        node.config = merge_dict(deepcopy(cfg), node.config)
        node.base_dir = os.path.abspath(workflow.base_dir)
    return graph


# --------------------------------------------------------------------- batch files
def batch_key(node):
    """The part of a batch file's name that names ``node``: '<hierarchy>_<id>'."""
    hierarchy = node_hierarchy(node)
    return f"{hierarchy}_{node_id(node)}" if hierarchy else node_id(node)


def batch_key_of(filename, prefix, ext):
    """``batch_key`` of a batch file named <prefix><time stamp>_<key><ext>, or None."""
    match = re.fullmatch(re.escape(prefix) + _STAMP + r"(.+)" + re.escape(ext), filename)
    return match.group(1) if match else None


def batch_script_prefix(batch_dir):
    """Path prefix of the job scripts the batch plugins write in ``batch_dir``."""
    return os.path.join(batch_dir, "batchscript_pyscript_")


def node_pickle_of_script(script):
    """The node pickle beside a job script (batchscript_pyscript_X.sh -> node_X.pklz)."""
    folder, name = os.path.split(script)
    suffix = name[len("batchscript_pyscript_"):-len(".sh")]
    return os.path.join(folder, f"node_{suffix}.pklz")


def node_pickles_of_job(script):
    """The node pickles a SLURMGraph job runs, in order (several for a grouped job)."""
    group = script + GROUP_SUFFIX
    if os.path.exists(group):
        with open(group) as fp:
            return [line.strip() for line in fp if line.strip()]
    return [node_pickle_of_script(script)]


def slurm_job_name(node, user):
    """The job name the SLURM plugin gives ``node``'s job: <id>.<hierarchy...>.<user>."""
    parts = [user, *filter(None, node_hierarchy(node).split(".")), node_id(node)]
    return ".".join(reversed(".".join(parts).split(".")))


def slurm_job_name_of(crashed_name, user):
    """The SLURM plugin's job name from a node's full name '<hierarchy>.<id>'."""
    return ".".join(reversed(f"{user}.{crashed_name}".split(".")))


_SUBMIT_RE = re.compile(
    r"^(?P<name>\w+)=\$\(sbatch (?P<args>.*) -J (?P=name) (?P<script>\S+) \| awk")


def parse_submit_jobs(batch_dir):
    """Jobs SLURMGraph wrote into batch/submit_jobs.sh, in submission order:
    dicts with jobname, script and deps (job names)."""
    jobs = []
    with open(os.path.join(batch_dir, "submit_jobs.sh")) as fp:
        for line in fp:
            match = _SUBMIT_RE.match(line.strip())
            if not match:
                continue
            dep = re.search(r"--dependency=afterok:(\S+)", match.group("args"))
            deps = re.findall(r"\$\{(\w+)\}", dep.group(1)) if dep else []
            jobs.append({"jobname": match.group("name"), "script": match.group("script"),
                         "deps": deps})
    return jobs


# ------------------------------------------------------------------------ pickles
def node_of_pickle(path):
    """The node stored in a batch plugin's node_*.pklz."""
    from nipype.utils.filemanip import loadpkl

    return loadpkl(path)["node"]


#: The uuid that ends a crash file's name: crash-<time>-<user>-<node>-<uuid>.<pklz|txt>.
CRASH_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def text_crash_header(path):
    """(node full name, working directory) from a text crash file."""
    name, outdir = os.path.basename(path), ""
    with open(path, errors="replace") as fp:
        for line in fp:
            if line.startswith("Node: "):
                name = line[len("Node: "):].strip()
            elif line.startswith("Working directory: "):
                outdir = line[len("Working directory: "):].strip()
                break
    return name, outdir


def crash_of_pickle(path):
    """(node or None, traceback text) of a .pklz crash file."""
    from nipype.utils.filemanip import loadcrash

    crash = loadcrash(path)
    return crash.get("node"), "".join(crash.get("traceback") or [])


def result_traceback(result_file):
    """Traceback stored in a node's result file, or None (also None if unreadable)."""
    try:
        from nipype.utils.filemanip import loadpkl

        result = loadpkl(result_file)
    except Exception:  # noqa: BLE001 - unreadable result: no traceback known
        return None
    if isinstance(result, dict):
        traceback = result.get("traceback")
    else:
        traceback = getattr(getattr(result, "runtime", None), "traceback", None)
    if isinstance(traceback, (list, tuple)):
        traceback = "".join(traceback)
    return traceback or None


# ------------------------------------------------------- SLURMGraph with grouped jobs
def job_groups(nodes, dependencies, done, quick):
    """Jobs for a SLURMGraph run: lists of node indices, in submission order.

    ``nodes`` in topological order, ``dependencies`` {index: predecessor indices},
    ``done[i]`` True for nodes not to submit, ``quick(node)``. A quick node joins a
    quick job that delays it for nothing: the job of its latest predecessor when that
    job already waits for the rest, or a sibling job waiting for exactly what the
    node needs. Any other node gets a job of its own (so heavy nodes keep their own
    requests). Returns (groups, {group: groups it waits for directly}).
    """
    group_of, groups, waits_for = {}, [], {}
    for i, node in enumerate(nodes):
        if done[i]:
            continue
        preds = {group_of[d] for d in dependencies.get(i, []) if not done[d]}
        needs = set().union(preds, *(waits_for[g] for g in preds))
        latest = max(preds) if preds else None
        joins = [g for g in reversed(range(len(groups))) if quick(nodes[groups[g][0]]) and (
            (g == latest and preds - {g} <= waits_for[g]) or waits_for[g] == needs)]
        if quick(node) and joins:
            group_of[i] = joins[0]
            groups[joins[0]].append(i)
        else:
            group_of[i] = len(groups)
            waits_for[len(groups)] = needs
            groups.append([i])
    direct = {g: sorted({group_of[d] for i in members for d in dependencies.get(i, [])
                         if not done[d]} - {g}) for g, members in enumerate(groups)}
    return groups, direct


def grouped_slurmgraph(plugin_args):
    """nipype's SLURMGraph plugin, but quick nodes (plugin_args[QUICK]) share jobs."""
    from nipype.interfaces.base import CommandLine
    from nipype.pipeline.plugins import slurmgraph

    class SLURMGraphPlugin(slurmgraph.SLURMGraphPlugin):  # named so for nipype's logs
        def _submit_graph(self, pyfiles, dependencies, nodes):
            done = [bool(self._dont_resubmit_completed_jobs) and
                    slurmgraph.node_completed_status(node) for node in nodes]
            for i in range(len(nodes)):  # done only if what it needs is done too
                done[i] = done[i] and all(done[d] for d in dependencies.get(i, []))
            groups, waits = job_groups(nodes, dependencies, done,
                                       lambda node: bool(node.plugin_args.get(QUICK)))
            batch_dir = os.path.dirname(pyfiles[0])
            names = [re.sub(r"[^\w]", "_", f"j{g[0]}_{node_id(nodes[g[0]])}") for g in groups]
            lines = ["#!/usr/bin/env bash\n"]
            for g, members in enumerate(groups):
                template, sbatch_args = self._get_args(nodes[members[0]],
                                                       ["template", "sbatch_args"])
                first = os.path.basename(pyfiles[members[0]])[:-len(".py")]
                script = os.path.join(batch_dir, f"batchscript_{first}.sh")
                runner = "import runpy, sys; [runpy.run_path(p) for p in sys.argv[1:]]"
                command = [sys.executable, "-c", runner, *(pyfiles[i] for i in members)]
                with open(script, "w") as fp:
                    fp.write("\n".join((template.rstrip("\n"), shlex.join(command))) + "\n")
                if len(members) > 1:
                    with open(script + GROUP_SUFFIX, "w") as fp:
                        fp.writelines(node_pickle_of_script(os.path.join(
                            batch_dir, f"batchscript_{os.path.basename(pyfiles[i])[:-3]}.sh"))
                            + "\n" for i in members)
                deps = ":".join(f"${{{names[w]}}}" for w in waits[g])
                deps = f"--dependency=afterok:{deps}" if deps else ""
                lines.append(f"{names[g]}=$(sbatch {sbatch_args} {deps} -J {names[g]} "
                             f"{script} | awk '/^Submitted/ {{print $4}}')\n")
            submit = os.path.join(batch_dir, "submit_jobs.sh")
            with open(submit, "w") as fp:
                fp.writelines(lines)
            CommandLine("bash", args=submit, environ=dict(os.environ), resource_monitor=False,
                        terminal_output="allatonce").run()

    return SLURMGraphPlugin(plugin_args=plugin_args)


# ------------------------------------------------------------- patches for one run
def node_completed_status(checknode):
    """SLURMGraph's "is this node done?" asking for a cache present and up to date."""
    overwrite = checknode.overwrite
    if overwrite or (overwrite is None and checknode.interface.always_run):
        return False
    try:
        cached, updated = checknode.is_cached()
    except Exception:  # noqa: BLE001 - e.g. upstream results missing: not done
        return False
    return bool(cached and updated)


def orphan_safe_initializer(cwd, parent=None, initializer=None):
    """MultiProc's worker initializer, and the worker ends when ``parent`` dies."""
    die_with_parent(parent)
    initializer(cwd)


def die_with_parent(parent):
    """Ask the kernel to kill this process when its parent ends (Linux; else a no-op).

    ``parent`` is the PID that should be the parent: if it ended before the call
    (this process was already re-parented), end now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to ask
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


@contextmanager
def _replaced(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield original
    finally:
        setattr(module, name, original)


@contextmanager
def _orphan_safe_multiproc():
    from functools import partial

    from nipype.pipeline.plugins import multiproc

    initializer = partial(orphan_safe_initializer, parent=os.getpid(),
                          initializer=multiproc.process_initializer)
    with _replaced(multiproc, "process_initializer", initializer):
        yield


def patched_for_run(plugin):
    """Context manager: nipype patched as ``plugin`` needs for one run, restored after."""
    check_nipype_version()
    if plugin == "SLURMGraph":
        from nipype.pipeline.plugins import slurmgraph

        return _replaced(slurmgraph, "node_completed_status", node_completed_status)
    if plugin == "MultiProc":
        return _orphan_safe_multiproc()
    return nullcontext()
