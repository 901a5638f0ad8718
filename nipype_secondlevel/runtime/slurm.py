"""Make Nipype's SLURM and SLURMGraph plugins "just work".

Typical use (``run`` is what the project's run function does)::

    args = prepare_slurm_run(wf, "SLURM", sbatch_args="--time=60")
    try:
        wf.run(plugin="SLURM", plugin_args=args)
    except RuntimeError as exc:
        raise slurm_run_error(wf, exc) from exc

    args = prepare_slurm_run(wf, "SLURMGraph")
    wf.run(plugin="SLURMGraph", plugin_args=args)   # returns right after sbatch
    wait_for_slurmgraph(wf, timeout=3600)           # waits, raises SlurmRunError

or simply ``run_on_slurm(wf, "SLURM" | "SLURMGraph", ...)``.

What the helpers take care of (nipype 1.11):

- the SLURM plugin needs ``LOGNAME`` in the environment (``KeyError`` otherwise);
  ``NIPYPE_NO_ET`` keeps the jobs from trying to reach the network;
- the SLURM plugin polls ``squeue`` every ``execution.poll_sleep_duration`` s (a
  config value, not a plugin_arg; nipype's default is 2 s);
- SLURMGraph crashes with ``AttributeError`` when ``dont_resubmit_completed_jobs``
  is not given; we pass ``True`` so a rerun only submits nodes whose cache is
  not valid (the failed ones and everything downstream of them). nipype's own
  check for that treats an OUTDATED cache as done (a changed parameter would be
  silently ignored), so prepare_slurm_run replaces it with a correct one
  (``slurmgraph.node_completed_status``, see ``_fix_slurmgraph_completed_status``);
- each node's resource hints (``node.mem_gb``, ``node.n_procs``) become per-node
  sbatch options (``--mem``, ``--cpus-per-task``) in ``node.plugin_args``.
  SLURMGraph concatenates the node's ``sbatch_args`` to the global ones without
  a space, so ours always start with one. Nodes left at nipype's defaults
  (``mem_gb=0.2``, ``n_procs=1``) get no per-node option: the cluster default
  (or ``sbatch_args``) applies to them. plugin_args are not part of a node's
  hash, so they never invalidate the cache;
- the SLURM plugin only adds its ``-o``/``-e`` options when the *substrings*
  "-o"/"-e" are absent from the sbatch arguments (so ``--exclusive`` or
  ``--export`` silently drop ``-e``); we always give ``--output``/``--error``
  explicitly: every job logs to ``<workflow dir>/batch/slurm-<job name>-<job id>.out``,
  which also makes the log of a node easy to find;
- SLURMGraph returns as soon as the jobs are submitted, never reports a failure,
  and (without ``kill_invalid_depend`` in the cluster's DependencyParameters)
  leaves the dependents of a failed job PENDING forever: ``wait_for_slurmgraph``
  waits for the jobs, cancels jobs whose dependency can never be satisfied, and
  reports every node that failed or did not run.
"""

from __future__ import annotations

import getpass
import glob
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from copy import deepcopy
from dataclasses import dataclass, field

__all__ = [
    "NodeOutcome",
    "SlurmRunError",
    "collect_outcomes",
    "prepare_slurm_run",
    "run_on_slurm",
    "slurm_run_error",
    "wait_for_slurmgraph",
]

PLUGINS = {"slurm": "SLURM", "slurmgraph": "SLURMGraph"}
#: nipype's default resource hints: nodes still at these get no per-node option
DEFAULT_MEM_GB = 0.2
DEFAULT_N_PROCS = 1
#: file written by prepare_slurm_run into the workflow folder (the run's start time)
MARKER = "slurm_run.json"
_PA_KEY = "_nsl_user_sbatch_args"  # node.plugin_args key keeping the user's own value
_NO_USER_ARGS = "\x00none"
TERMINAL_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT",
}
_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# --------------------------------------------------------------------------- outcomes
@dataclass
class NodeOutcome:
    """What happened to one node in a SLURM / SLURMGraph run.

    ``status`` is one of ``"ran"`` (executed in this run), ``"cached"`` (valid
    result from an earlier run), ``"failed"`` or ``"not_run"`` (skipped or
    cancelled because an upstream node failed: see ``blocked_by``).
    """

    name: str
    status: str
    output_dir: str
    result_file: str | None = None
    crash_file: str | None = None
    slurm_log: str | None = None
    job_id: str | None = None
    job_state: str | None = None
    error: str | None = None
    blocked_by: list = field(default_factory=list)

    @property
    def ok(self):
        return self.status in ("ran", "cached")


class SlurmRunError(RuntimeError):
    """A SLURM / SLURMGraph run had failed nodes; ``str()`` is a per-node report.

    Attributes: ``outcomes`` (name -> NodeOutcome), ``failed`` and ``not_run``
    (lists of NodeOutcome).
    """

    def __init__(self, report, outcomes=None):
        super().__init__(report)
        self.report = report
        self.outcomes = dict(outcomes or {})
        self.failed = [o for o in self.outcomes.values() if o.status == "failed"]
        self.not_run = [o for o in self.outcomes.values() if o.status == "not_run"]


# ---------------------------------------------------------------------- preparation
def _plugin_name(plugin):
    name = PLUGINS.get(str(plugin).lower())
    if name is None:
        raise ValueError(f"plugin must be 'SLURM' or 'SLURMGraph', not {plugin!r}")
    return name


def _split(args, what):
    try:
        return shlex.split(args or "")
    except ValueError as exc:
        raise ValueError(f"{what}: cannot parse {args!r}: {exc}") from None


def _has_opt(tokens, short, long):
    """True when ``tokens`` really contain option -x / --long (not just the substring)."""
    for tok in tokens:
        if short and (tok == short or (tok.startswith(short) and not tok.startswith("--"))):
            return True
        if tok == long or tok.startswith(long + "="):
            return True
    return False


def _opt_value(tokens, short, long):
    for i, tok in enumerate(tokens):
        if tok in (short, long) and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith(long + "="):
            return tok[len(long) + 1:]
        if short and tok.startswith(short) and not tok.startswith("--") and len(tok) > 2:
            return tok[2:]
    return None


def _log_options(batch_dir, tokens):
    """--output/--error so each job logs to batch/slurm-<job name>-<job id>.out."""
    has_o = _has_opt(tokens, "-o", "--output")
    has_e = _has_opt(tokens, "-e", "--error")
    if has_o and has_e:
        return []
    if has_o:  # keep stderr with the user's stdout, as sbatch does by default
        return ["--error=" + _opt_value(tokens, "-o", "--output")]
    if has_e:
        return ["--output=" + _opt_value(tokens, "-e", "--error")]
    # sbatch expands %x (job name) and %j (job id); a literal % must be doubled
    path = os.path.join(batch_dir.replace("%", "%%"), "slurm-%x-%j.out")
    return ["--output=" + path, "--error=" + path]


def _node_mem_gb(node):
    try:
        return float(node.mem_gb)
    except (AttributeError, TypeError, ValueError):  # an estimator failed: no hint
        return None


def _node_n_procs(node):
    try:
        return int(node.n_procs or 1)
    except (AttributeError, TypeError, ValueError):
        return None


def _hint_options(node, global_tokens, node_tokens):
    """Per-node sbatch options from node.mem_gb / node.n_procs (skipping defaults)."""
    opts = []
    n_procs = _node_n_procs(node)
    if (n_procs and n_procs != DEFAULT_N_PROCS
            and not _has_opt(node_tokens, "-c", "--cpus-per-task")):
        opts.append(f"--cpus-per-task={n_procs}")
    mem_gb = _node_mem_gb(node)
    user_mem = any(_has_opt(node_tokens, None, o) for o in ("--mem", "--mem-per-cpu",
                                                             "--mem-per-gpu"))
    if mem_gb and abs(mem_gb - DEFAULT_MEM_GB) > 1e-9 and not user_mem:
        mb = math.ceil(mem_gb * 1024)
        if any(_has_opt(global_tokens, None, o) for o in ("--mem-per-cpu", "--mem-per-gpu")):
            # --mem and --mem-per-cpu are mutually exclusive in sbatch
            opts.append(f"--mem-per-cpu={math.ceil(mb / max(n_procs or 1, 1))}M")
        else:
            opts.append(f"--mem={mb}M")
    return opts


def _batch_dir(workflow):
    return os.path.join(workflow.base_dir, workflow.name, "batch")


def _sbatch_test(args, nodes):
    """``sbatch --test-only``: refuse options the cluster can never satisfy, up front."""
    cmd = ["sbatch", "--test-only", *args, "--wrap", "true"]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"could not run {shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace("\n", " ")
        if "Unable to contact slurm controller" in msg:
            raise RuntimeError(f"cannot reach the SLURM controller (is the cluster up?): {msg}")
        raise ValueError(
            f"SLURM refuses the sbatch options {shlex.join(args)!r} of node(s) "
            f"{', '.join(sorted(nodes))}: {msg}"
        )


def _fix_slurmgraph_completed_status():
    """Make SLURMGraph's ``dont_resubmit_completed_jobs`` skip only UP-TO-DATE nodes.

    nipype 1.11's ``slurmgraph.node_completed_status`` uses the first value of
    ``node.hash_exists()``, which is True for an *outdated* cache too (and it
    deletes that outdated hash file on the way): change a parameter, rerun, and
    SLURMGraph submits nothing and silently keeps the old results. The fixed
    check asks ``node.is_cached()`` for a cache that is present *and* up to date.
    Returns False (leave dont_resubmit_completed_jobs off) if nipype changed.
    """
    try:
        from nipype.pipeline.plugins import slurmgraph
    except ImportError:
        return False
    current = getattr(slurmgraph, "node_completed_status", None)
    if current is None:
        return False
    if getattr(current, "_nsl_fixed", False):
        return True

    def node_completed_status(checknode):
        overwrite = checknode.overwrite
        if overwrite or (overwrite is None and checknode.interface.always_run):
            return False
        try:
            cached, updated = checknode.is_cached()
        except Exception:  # noqa: BLE001 - e.g. upstream results missing: not done
            return False
        return bool(cached and updated)

    node_completed_status._nsl_fixed = True
    node_completed_status.__doc__ = current.__doc__
    slurmgraph.node_completed_status = node_completed_status
    return True


def prepare_slurm_run(workflow, plugin, sbatch_args="", poll_interval=0.5, plugin_args=None,
                      *, check=True):
    """Get ``workflow`` ready for ``workflow.run(plugin=plugin, plugin_args=<returned>)``.

    Parameters
    ----------
    workflow : nipype Workflow (its ``base_dir`` must be set; it is made absolute)
    plugin : "SLURM" or "SLURMGraph"
    sbatch_args : str
        sbatch options for every job (e.g. ``"--time=60 --partition=short"``);
        appended to ``plugin_args["sbatch_args"]`` if both are given.
    poll_interval : float
        Seconds between the SLURM plugin's ``squeue`` polls
        (``execution.poll_sleep_duration``).
    plugin_args : dict or None
        Further plugin_args, passed through (``max_jobs``, ``retry_timeout``,
        ``template``, ``dont_resubmit_completed_jobs``...).
    check : bool
        Run ``sbatch --test-only`` once per distinct set of options (when sbatch
        is on PATH) and raise ValueError if SLURM refuses them, e.g. a node asking
        for more memory or CPUs than any node has. SLURMGraph would otherwise
        drop such a job silently.

    Returns
    -------
    dict : the plugin_args. Per-node options are stored in ``node.plugin_args``.
    Calling it again (e.g. for a rerun) gives the same result, it does not pile
    options up.
    """
    plugin = _plugin_name(plugin)
    if not workflow.base_dir:
        raise ValueError(f"workflow {workflow.name!r} needs a base_dir to run with {plugin}")
    workflow.base_dir = os.path.abspath(workflow.base_dir)
    if re.search(r"\s", workflow.base_dir):
        raise ValueError(f"{plugin} cannot run in a folder with white space: "
                         f"{workflow.base_dir!r} (nipype builds unquoted sbatch commands)")
    if poll_interval is None or float(poll_interval) <= 0:
        raise ValueError(f"poll_interval must be > 0, not {poll_interval!r}")

    if not os.environ.get("LOGNAME"):
        try:
            os.environ["LOGNAME"] = getpass.getuser()
        except (KeyError, OSError):
            os.environ["LOGNAME"] = f"uid{os.getuid()}"
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    workflow.config["execution"]["poll_sleep_duration"] = float(poll_interval)

    args = dict(plugin_args or {})
    given = " ".join(a for a in (args.get("sbatch_args") or "", sbatch_args or "") if a).strip()
    global_tokens = _split(given, "sbatch_args")
    batch_dir = _batch_dir(workflow)
    log_opts = _log_options(batch_dir, global_tokens)
    global_tokens += log_opts
    args["sbatch_args"] = shlex.join(global_tokens)
    if plugin == "SLURMGraph":
        # only safe with the fixed up-to-date check; else every job is submitted
        # (each then finds its own cache, which is correct but slower)
        args.setdefault("dont_resubmit_completed_jobs", _fix_slurmgraph_completed_status())

    to_check = {}  # tuple of args -> node names
    for node in sorted(workflow._get_all_nodes(), key=lambda n: n.fullname):
        pa = dict(node.plugin_args or {})
        user = pa.pop(_PA_KEY, None)
        if user is None:  # first call: remember what the user had
            user = pa.get("sbatch_args", _NO_USER_ARGS)
        user_args = "" if user == _NO_USER_ARGS else (user or "")
        node_tokens = _split(user_args, f"node {node.fullname} plugin_args['sbatch_args']")
        overwrite = bool(pa.get("overwrite"))
        extra = _hint_options(node, [] if overwrite else global_tokens, node_tokens)
        if overwrite:  # the node's args replace the global ones, log options included
            extra += _log_options(batch_dir, node_tokens)
        if extra:
            pa["sbatch_args"] = " " + " ".join(t for t in (user_args.strip(), shlex.join(extra))
                                               if t)
            pa[_PA_KEY] = user
        elif user == _NO_USER_ARGS:
            pa.pop("sbatch_args", None)
        else:
            pa["sbatch_args"] = user_args
        node.plugin_args = pa
        effective = (node_tokens + extra) if overwrite else (
            global_tokens + node_tokens + extra)
        shown = node.fullname  # top-level nodes know their workflow, nested ones not yet
        if (node._hierarchy or "").split(".")[0] != workflow.name:
            shown = f"{workflow.name}.{shown}"
        to_check.setdefault(tuple(effective), []).append(shown)

    if check and shutil.which("sbatch"):
        for effective, names in to_check.items():
            _sbatch_test(list(effective), names)

    wf_dir = os.path.join(workflow.base_dir, workflow.name)
    os.makedirs(batch_dir, exist_ok=True)
    with open(os.path.join(wf_dir, MARKER), "w") as fp:
        json.dump({"plugin": plugin, "prepared_at": time.time(),
                   "sbatch_args": args["sbatch_args"]}, fp)
    workflow._nsl_slurm_prepared_at = os.stat(os.path.join(wf_dir, MARKER)).st_mtime
    return args


# ------------------------------------------------------------------- locating things
def _workflow_dir(workflow_or_dir, name=None):
    """(workflow or None, absolute workflow folder = <base_dir>/<name>)."""
    if hasattr(workflow_or_dir, "_get_all_nodes"):
        wf = workflow_or_dir
        if not wf.base_dir:
            raise ValueError(f"workflow {wf.name!r} has no base_dir")
        return wf, os.path.join(os.path.abspath(wf.base_dir), wf.name)
    path = os.path.abspath(os.fspath(workflow_or_dir))
    if name:
        return None, os.path.join(path, name)
    if os.path.isdir(os.path.join(path, "batch")):
        return None, path
    found = sorted(os.path.dirname(d) for d in glob.glob(os.path.join(glob.escape(path),
                                                                      "*", "batch")))
    if len(found) == 1:
        return None, found[0]
    if not found:
        raise FileNotFoundError(f"no workflow folder with a batch/ folder in {path}")
    raise ValueError(f"several workflows in {path} ({', '.join(found)}): pass name=")


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _newest(paths, since):
    dated = [(m, p) for p in paths if (m := _mtime(p)) is not None and m >= since]
    return max(dated)[1] if dated else None


def _fullname(node):
    return node.fullname if hasattr(node, "fullname") else str(node)


def _crash_dirs(node):
    config = getattr(node, "config", None) or {}
    dirs = [config.get("execution", {}).get("crashdump_dir"), node.output_dir(), os.getcwd()]
    return [d for i, d in enumerate(dirs) if d and d not in dirs[:i]]


def _crash_is_for(path, node, outdir):
    """Does crash file ``path`` belong to ``node`` (same working directory)?"""
    try:
        if path.endswith(".txt"):
            with open(path, errors="replace") as fp:
                for line in fp:
                    if line.startswith("Working directory: "):
                        return line[len("Working directory: "):].strip() == outdir
            return True
        from nipype.utils.filemanip import loadcrash

        crash_node = loadcrash(path).get("node")
        return crash_node is None or crash_node.output_dir() == outdir
    except Exception:  # noqa: BLE001 - unreadable crash file: trust its name
        return True


def _find_crash(node, outdir, since):
    pattern = re.compile(r"-" + re.escape(node._id) + "-" + _UUID_RE + r"\.(pklz|txt)$")
    cands = []
    for d in _crash_dirs(node):
        for p in glob.glob(os.path.join(glob.escape(d), "crash-*")):
            if pattern.search(os.path.basename(p)) and (_mtime(p) or 0) >= since:
                cands.append(p)
    for p in sorted(cands, key=lambda p: _mtime(p) or 0, reverse=True):
        if _crash_is_for(p, node, outdir):
            return p
    return None


def _txt_crash_header(path):
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


def _error_line(crash_file=None, result_file=None):
    """The last meaningful line of the traceback in a crash (or result) file."""
    lines = []
    try:
        if crash_file and crash_file.endswith(".txt"):
            with open(crash_file, errors="replace") as fp:
                lines = fp.read().splitlines()
        elif crash_file:
            from nipype.utils.filemanip import loadcrash

            lines = "".join(loadcrash(crash_file).get("traceback") or []).splitlines()
        elif result_file:
            tb = _result_traceback(result_file)
            lines = (tb or "").splitlines()
    except Exception as exc:  # noqa: BLE001 - a report must not fail on a bad file
        return f"(could not read {crash_file or result_file}: {exc})"
    lines = [ln.strip() for ln in lines if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b", ln):
            return ln
    return lines[-1] if lines else None


def _result_traceback(result_file):
    """Traceback stored in a result file, or None (also None if unreadable)."""
    try:
        from nipype.utils.filemanip import loadpkl

        res = loadpkl(result_file)
    except Exception:  # noqa: BLE001 - unreadable result: no traceback known
        return None
    if isinstance(res, dict):
        tb = res.get("traceback")
    else:
        tb = getattr(getattr(res, "runtime", None), "traceback", None)
    if isinstance(tb, (list, tuple)):
        tb = "".join(tb)
    return tb or None


def _slurm_plugin_jobname(node):
    parts = [os.environ.get("LOGNAME", "")]
    if node._hierarchy:
        parts.append(node._hierarchy)
    parts.append(node._id)
    items = ".".join(parts).split(".")
    items.reverse()
    return ".".join(items)


def _log_for(batch_dir, jobname, since, fallbacks=()):
    log = _newest(glob.glob(os.path.join(glob.escape(batch_dir),
                                         f"slurm-{glob.escape(jobname)}-*.out")), since)
    if log is None:
        log = _newest([p for p in fallbacks if os.path.exists(p)], since)
    return log


def _job_id_from_log(log):
    m = re.search(r"-(\d+)\.out$", log or "")
    return m.group(1) if m else None


def _squeue(args, timeout=30):
    cmd = ["squeue", "-h", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _job_states(job_ids):
    """{job id: (state, reason)} for jobs slurmctld still remembers (best effort)."""
    ids = sorted({j for j in job_ids if j})
    if not ids or not shutil.which("squeue"):
        return {}
    try:
        out = _squeue(["-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


# ------------------------------------------------------------------- the exec graph
def _exec_graph(workflow):
    """The expanded graph ``workflow.run`` executes, with base_dir and config set."""
    from nipype import config as nipype_config
    from nipype.pipeline.engine.utils import generate_expanded_graph, merge_dict

    flat = workflow._create_flat_graph()
    graph = generate_expanded_graph(deepcopy(flat))
    cfg = merge_dict(deepcopy(nipype_config._sections), workflow.config)
    for node in graph.nodes():
        node.config = merge_dict(deepcopy(cfg), node.config)
        node.base_dir = os.path.abspath(workflow.base_dir)
    return graph


def _classify(items, since):
    """Turn per-node facts into NodeOutcomes, in topological order.

    ``items``: list of dicts with node, deps (names), submitted (bool or None),
    jobname, job_id, job_state, job_reason, log.
    """
    outcomes = {}
    for it in items:
        node = it["node"]
        name = _fullname(node)
        outdir = node.output_dir()
        result = os.path.join(outdir, f"result_{node.name}.pklz")
        res_m = _mtime(result)
        crash = _find_crash(node, outdir, since)
        o = NodeOutcome(name=name, status="", output_dir=outdir,
                        result_file=result if res_m is not None else None,
                        crash_file=crash, slurm_log=it.get("log"),
                        job_id=it.get("job_id") or _job_id_from_log(it.get("log")),
                        job_state=it.get("job_state"))
        bad_deps = [outcomes[d] for d in it["deps"] if d in outcomes and not outcomes[d].ok]
        roots = []
        for d in bad_deps:
            for r in ([d.name] if d.status == "failed" else d.blocked_by):
                if r not in roots:
                    roots.append(r)
        fresh = res_m is not None and res_m >= since
        if crash is not None:
            o.status, o.error = "failed", _error_line(crash_file=crash)
        elif fresh and _result_traceback(result):
            o.status, o.error = "failed", _error_line(result_file=result)
        elif fresh:
            o.status = "ran"
        elif bad_deps:
            o.status, o.blocked_by = "not_run", roots
        elif it.get("submitted"):
            if o.job_state and o.job_state.split()[0] not in TERMINAL_STATES:
                o.status = "not_run"
                o.error = (f"still {o.job_state} in SLURM (job {o.job_id}) when the run "
                           "stopped, e.g. stop_on_first_crash")
            elif res_m is not None and o.job_state in (None, "COMPLETED"):
                o.status = "cached"  # the job found a valid cache and did not rewrite it
            else:
                o.status = "failed"
                o.error = (f"SLURM job {o.job_id or '?'} ended "
                           f"{o.job_state or '(state unknown)'}"
                           f"{' (' + it['job_reason'] + ')' if it.get('job_reason') else ''}"
                           " without writing a result or crash file")
                if not o.job_id:
                    o.error = ("no SLURM job found for this node (sbatch refused it? "
                               "see the submission and the slurm log)")
        elif res_m is not None:
            o.status = "cached"
        else:
            o.status, o.blocked_by = "not_run", roots
        outcomes[name] = o
    return outcomes


def _slurm_plugin_items(workflow, wf_dir, since):
    """Per-node facts of a SLURM-plugin run (workflow object: full graph)."""
    import networkx as nx

    batch_dir = os.path.join(wf_dir, "batch")
    submitted = set()
    for p in glob.glob(os.path.join(glob.escape(batch_dir), "node_*.pklz")):
        if (_mtime(p) or 0) >= since:
            # node_<YYYYmmdd_HHMMSS>_<hierarchy>_<id>.pklz
            submitted.add(os.path.basename(p)[len("node_") + 16:-len(".pklz")])
    items = []
    if workflow is None:
        return items
    graph = _exec_graph(workflow)
    for node in nx.topological_sort(graph):
        key = f"{node._hierarchy}_{node._id}" if node._hierarchy else node._id
        items.append({
            "node": node,
            "deps": [_fullname(p) for p in graph.predecessors(node)],
            "submitted": key in submitted,
            "log": _log_for(batch_dir, _slurm_plugin_jobname(node), since),
        })
    states = _job_states(_job_id_from_log(it["log"]) for it in items)
    active = _active_jobs(batch_dir)  # jobs left behind, e.g. by stop_on_first_crash
    for it in items:
        node = it["node"]
        key = f"{node._hierarchy}_{node._id}" if node._hierarchy else node._id
        jid = _job_id_from_log(it["log"])
        st = states.get(jid or "")
        if key in active and (not jid or int(active[key][0]) >= int(jid)):
            jid, st = active[key][0], active[key][1:]
            it["job_id"] = jid
        if st:
            it["job_state"], it["job_reason"] = st
    return items


def _active_jobs(batch_dir):
    """{"<hierarchy>_<id>": (job id, state, reason)} of this folder's queued/running jobs."""
    if not shutil.which("squeue"):
        return {}
    try:
        user = os.environ.get("LOGNAME") or getpass.getuser()
        out = _squeue(["-u", user, "-o", "%i|%T|%r|%o"])
    except (OSError, KeyError, RuntimeError, subprocess.SubprocessError):
        return {}
    prefix = os.path.join(batch_dir, "batchscript_pyscript_")
    active = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[3].startswith(prefix) and parts[3].endswith(".sh"):
            # batchscript_pyscript_<YYYYmmdd_HHMMSS>_<hierarchy>_<id>.sh
            key = parts[3][len(prefix) + 16:-len(".sh")]
            if key not in active or int(parts[0]) > int(active[key][0]):
                active[key] = (parts[0], parts[1], parts[2])
    return active


_SUBMIT_RE = re.compile(
    r"^(?P<name>\w+)=\$\(sbatch (?P<args>.*) -J (?P=name) (?P<script>\S+) \| awk")


def _parse_submit_jobs(batch_dir):
    """Jobs written by SLURMGraph into batch/submit_jobs.sh (in submission order)."""
    path = os.path.join(batch_dir, "submit_jobs.sh")
    jobs = []
    with open(path) as fp:
        for line in fp:
            m = _SUBMIT_RE.match(line.strip())
            if not m:
                continue
            dep = re.search(r"--dependency=afterok:(\S+)", m.group("args"))
            deps = re.findall(r"\$\{(\w+)\}", dep.group(1)) if dep else []
            jobs.append({"jobname": m.group("name"), "script": m.group("script"), "deps": deps})
    return jobs


def _graph_items(wf_dir, since, seen=None):
    """Per-node facts of a SLURMGraph run, from submit_jobs.sh and the node pickles."""
    from nipype.utils.filemanip import loadpkl

    seen = seen or {}
    batch_dir = os.path.join(wf_dir, "batch")
    jobs = _parse_submit_jobs(batch_dir)
    by_job = {}
    items = []
    for job in jobs:
        base = os.path.basename(job["script"])  # batchscript_pyscript_<suffix>.sh
        suffix = base[len("batchscript_pyscript_"):-len(".sh")]
        pkl = os.path.join(os.path.dirname(job["script"]), f"node_{suffix}.pklz")
        node = loadpkl(pkl)["node"]
        st = seen.get(job["script"], {})
        it = {
            "node": node,
            "deps": [by_job[d] for d in job["deps"] if d in by_job],
            "submitted": True,
            "jobname": job["jobname"],
            "job_id": st.get("id"),
            "job_state": st.get("state"),
            "job_reason": st.get("reason"),
            "log": _log_for(batch_dir, job["jobname"], since,
                            (job["script"] + ".o", job["script"] + ".e")),
        }
        if not it["job_id"] and it["log"]:
            states = _job_states([_job_id_from_log(it["log"])])
            st = states.get(_job_id_from_log(it["log"]) or "")
            if st:
                it["job_state"], it["job_reason"] = st
        by_job[job["jobname"]] = _fullname(node)
        items.append(it)
    return items


# ------------------------------------------------------------------------ reporting
def format_report(outcomes, title):
    """Human-readable per-node report (failed nodes first, then the ones not run)."""
    failed = [o for o in outcomes.values() if o.status == "failed"]
    not_run = [o for o in outcomes.values() if o.status == "not_run"]
    n_ok = sum(o.ok for o in outcomes.values())
    lines = [f"{title}: {len(failed)} node(s) failed, {len(not_run)} not run ({n_ok} ok)."]
    for o in failed:
        lines.append(f"FAILED  {o.name}")
        lines.append(f"    error:      {o.error or '(no error message found)'}")
        lines.append(f"    crash file: {o.crash_file or '(none)'}")
        lines.append(f"    slurm log:  {o.slurm_log or '(not found)'}")
        if o.job_id or o.job_state:
            lines.append(f"    slurm job:  {o.job_id or '?'} {o.job_state or ''}".rstrip())
        lines.append(f"    node dir:   {o.output_dir}")
    for o in not_run:
        why = (f"because {', '.join(o.blocked_by)} failed" if o.blocked_by
               else o.error or "never started: the run stopped before it, "
               "e.g. stop_on_first_crash")
        job = ""
        if o.job_id and not o.error:
            job = f"; SLURM job {o.job_id} {o.job_state or ''}".rstrip()
        lines.append(f"NOT RUN {o.name} ({why}{job})")
    return "\n".join(lines)


def _since(workflow, wf_dir, plugin, since):
    if since is not None:
        return float(since)
    if plugin == "SLURMGraph":
        m = _mtime(os.path.join(wf_dir, "batch", "submit_jobs.sh"))
        if m is not None:
            return m
    m = getattr(workflow, "_nsl_slurm_prepared_at", None) if workflow is not None else None
    if m is None:
        m = _mtime(os.path.join(wf_dir, MARKER))
    return m if m is not None else 0.0


def collect_outcomes(workflow_or_dir, plugin="SLURM", name=None, since=None):
    """{node name: NodeOutcome} for the last run (files newer than ``since``).

    ``since`` defaults to the time prepare_slurm_run was called (SLURM) or the
    time batch/submit_jobs.sh was written (SLURMGraph). For the SLURM plugin,
    pass the workflow object (the graph comes from it).
    """
    plugin = _plugin_name(plugin)
    workflow, wf_dir = _workflow_dir(workflow_or_dir, name)
    t0 = _since(workflow, wf_dir, plugin, since)
    if plugin == "SLURMGraph":
        return _classify(_graph_items(wf_dir, t0), t0)
    return _classify(_slurm_plugin_items(workflow, wf_dir, t0), t0)


def slurm_run_error(workflow_or_dir, exc=None, name=None, since=None):
    """SlurmRunError with a per-node report for a failed SLURM-plugin run.

    Use it on the RuntimeError that ``workflow.run(plugin="SLURM")`` raises when
    a node fails::

        except RuntimeError as exc:
            raise slurm_run_error(wf, exc) from exc

    Each failed node is listed with its error line, crash file, SLURM log and
    job, followed by the nodes that were not run because of it. Pass the
    workflow object to get the nodes not run (a folder only gives the failed
    ones, found from their crash files).
    """
    workflow, wf_dir = _workflow_dir(workflow_or_dir, name)
    t0 = _since(workflow, wf_dir, "SLURM", since)
    if workflow is not None:
        outcomes = _classify(_slurm_plugin_items(workflow, wf_dir, t0), t0)
    else:
        outcomes = _outcomes_from_crash_files(wf_dir, t0)
    title = f"SLURM run of workflow {os.path.basename(wf_dir)!r} ({wf_dir})"
    report = format_report(outcomes, title)
    if not any(o.status == "failed" for o in outcomes.values()) and exc is not None:
        first = str(exc).strip().splitlines()
        report += ("\nNo failed node found from crash files; nipype said: "
                   + (first[-1] if first else repr(exc)))
    return SlurmRunError(report, outcomes)


def _outcomes_from_crash_files(wf_dir, since):
    """Failed nodes of a run known only by its folder: crash files of nodes in it."""
    from nipype.utils.filemanip import loadcrash, loadpkl

    outcomes = {}
    batch_dir = os.path.join(wf_dir, "batch")
    dirs = {os.getcwd(), wf_dir, os.path.join(os.path.dirname(wf_dir), "crash")}
    for p in glob.glob(os.path.join(glob.escape(batch_dir), "node_*.pklz")):
        if (_mtime(p) or 0) >= since:
            try:
                dirs.add(loadpkl(p)["node"].config["execution"]["crashdump_dir"])
            except Exception:  # noqa: BLE001, S112 - unreadable pickle: skip it
                continue
    for d in dirs:
        for p in glob.glob(os.path.join(glob.escape(d), "crash-*")):
            if (_mtime(p) or 0) < since:
                continue
            node, nm, outdir = None, os.path.basename(p), ""
            try:
                if p.endswith(".pklz"):
                    node = loadcrash(p)["node"]
                    nm, outdir = _fullname(node), node.output_dir()
                else:
                    nm, outdir = _txt_crash_header(p)
            except Exception:  # noqa: BLE001 - unreadable crash file: report by name
                nm, outdir = os.path.basename(p), ""
            if outdir and not outdir.startswith(wf_dir + os.sep):
                continue  # another workflow's crash
            log = None
            if nm.count("."):  # <hierarchy>.<id>: the SLURM plugin's job name
                hier, _, nid = nm.rpartition(".")
                jobname = ".".join(reversed(f"{os.environ.get('LOGNAME', '')}.{hier}.{nid}"
                                            .split(".")))
                log = _log_for(batch_dir, jobname, since)
            outcomes[nm] = NodeOutcome(name=nm, status="failed", output_dir=outdir,
                                       crash_file=p, slurm_log=log,
                                       job_id=_job_id_from_log(log),
                                       error=_error_line(crash_file=p))
    return outcomes


# --------------------------------------------------------------------- SLURMGraph wait
def wait_for_slurmgraph(workflow_or_base_dir, name=None, timeout=None, poll_interval=0.5,
                        cancel_never_satisfied=True, cancel_on_timeout=False,
                        raise_on_failure=True):
    """Wait for the jobs a SLURMGraph run submitted, then check every node.

    ``workflow.run(plugin="SLURMGraph")`` returns as soon as its
    ``batch/submit_jobs.sh`` has submitted the jobs. This finds those jobs in
    ``squeue`` (by their batch script, so several runs can share a cluster),
    waits until none is pending or running, and then looks at each submitted
    node: a fresh ``result_<node>.pklz`` means it ran, a fresh crash file (in the
    crashdump dir or the node folder) that it failed, and a node downstream of a
    failure is reported as not run because of it.

    It never hangs on a failed dependency: jobs PENDING with reason
    ``DependencyNeverSatisfied`` (a cluster without ``kill_invalid_depend``) are
    cancelled when ``cancel_never_satisfied`` (default) and reported as not run.

    Parameters
    ----------
    workflow_or_base_dir : Workflow, or its folder ``<base_dir>/<name>``, or its
        ``base_dir`` (then ``name`` is needed if it holds several workflows).
    timeout : seconds or None (no limit). On timeout a TimeoutError lists the
        jobs still queued; they are cancelled if ``cancel_on_timeout``.

    Returns
    -------
    dict name -> NodeOutcome for the submitted nodes (nodes not submitted
    because their cache was valid are not listed).

    Raises
    ------
    SlurmRunError if a node failed or did not run (and ``raise_on_failure``).
    """
    workflow, wf_dir = _workflow_dir(workflow_or_base_dir, name)
    batch_dir = os.path.join(wf_dir, "batch")
    if not os.path.exists(os.path.join(batch_dir, "submit_jobs.sh")):
        raise FileNotFoundError(f"{batch_dir}/submit_jobs.sh not found: did "
                                f"workflow.run(plugin='SLURMGraph') run in {wf_dir}?")
    since = _since(workflow, wf_dir, "SLURMGraph", None)
    jobs = _parse_submit_jobs(batch_dir)
    scripts = {j["script"] for j in jobs}
    names = sorted({j["jobname"] for j in jobs})
    user = os.environ.get("LOGNAME") or getpass.getuser()
    seen = {}  # script -> {"id", "state", "reason"}
    cancelled = set()
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    errors = 0
    while names:
        try:
            out = _squeue(["-t", "all", "-u", user, "--name", ",".join(names),
                           "-o", "%i|%T|%r|%o"])
            errors = 0
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:  # busy: retry
            errors += 1
            if errors > 20:
                raise RuntimeError(f"cannot query squeue for the SLURMGraph jobs: {exc}") from exc
            out = None
        active = []
        if out is not None:
            for line in out.splitlines():
                parts = line.strip().split("|", 3)
                if len(parts) != 4 or parts[3] not in scripts:
                    continue
                jid, state, reason, script = parts
                old = seen.get(script)
                if old and int(old["id"]) > int(jid):
                    continue  # an older submission of the same batch script
                seen[script] = {"id": jid, "state": state.split()[0], "reason": reason}
            for script, st in seen.items():
                if st["state"] not in TERMINAL_STATES:
                    active.append((script, st))
            never = [st["id"] for _, st in active
                     if st["reason"] == "DependencyNeverSatisfied" and st["id"] not in cancelled]
            if never and cancel_never_satisfied:
                subprocess.run(["scancel", *never], check=False, capture_output=True, timeout=30)
                cancelled.update(never)
            if not active:
                break
        if deadline is not None and time.monotonic() > deadline:
            queued = ", ".join(f"{st['id']} ({st['state']}, {st['reason']})"
                               for _, st in active) or "(squeue unavailable)"
            if cancel_on_timeout and active:
                subprocess.run(["scancel", *[st["id"] for _, st in active]],
                               check=False, capture_output=True, timeout=30)
            raise TimeoutError(f"SLURMGraph jobs of {wf_dir} still queued after {timeout} s: "
                               f"{queued}{' (cancelled)' if cancel_on_timeout else ''}")
        time.sleep(poll_interval)
    outcomes = _classify(_graph_items(wf_dir, since, seen), since)
    for o in outcomes.values():
        if o.job_id in cancelled and o.status == "not_run":
            o.job_state = (o.job_state or "CANCELLED") + " by wait_for_slurmgraph"
    if raise_on_failure and any(not o.ok for o in outcomes.values()):
        title = f"SLURMGraph run of workflow {os.path.basename(wf_dir)!r} ({wf_dir})"
        raise SlurmRunError(format_report(outcomes, title), outcomes)
    return outcomes


# ------------------------------------------------------------------------ one call
def run_on_slurm(workflow, plugin="SLURM", sbatch_args="", poll_interval=0.5, plugin_args=None,
                 timeout=None):
    """prepare_slurm_run + workflow.run + (SLURMGraph) wait, with per-node errors.

    Returns {node name: NodeOutcome}; raises SlurmRunError naming each failed
    node (crash file, SLURM log) and the nodes not run because of it.
    """
    plugin = _plugin_name(plugin)
    args = prepare_slurm_run(workflow, plugin, sbatch_args=sbatch_args,
                             poll_interval=poll_interval, plugin_args=plugin_args)
    if plugin == "SLURM":
        try:
            workflow.run(plugin="SLURM", plugin_args=args)
        except RuntimeError as exc:
            raise slurm_run_error(workflow, exc) from exc
        return collect_outcomes(workflow, "SLURM")
    workflow.run(plugin="SLURMGraph", plugin_args=args)
    return wait_for_slurmgraph(workflow, timeout=timeout, poll_interval=poll_interval)
