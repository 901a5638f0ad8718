"""sbatch options of a SLURM / SLURMGraph run: global, per node (resource hints), checked."""

import getpass
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import time

from .. import nipype_seam

PLUGINS = {"slurm": "SLURM", "slurmgraph": "SLURMGraph"}
#: nipype's default resource hints: nodes still at these get no per-node option
DEFAULT_MEM_GB = 0.2
DEFAULT_N_PROCS = 1
#: file written by prepare_slurm_run into the workflow folder (the run's start time)
MARKER = "slurm_run.json"
_PA_KEY = "_nsl_user_sbatch_args"  # node.plugin_args key keeping the user's own value
_NO_USER_ARGS = "\x00none"


def plugin_name(plugin):
    """'SLURM' or 'SLURMGraph' from any capitalisation (ValueError otherwise)."""
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


def batch_dir_of(workflow):
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



def prepare_slurm_run(workflow, plugin, sbatch_args="", poll_interval=0.5, plugin_args=None,
                      *, check=True, gather_quick_nodes=False):
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
    gather_quick_nodes : bool
        Quick nodes (left at nipype's default resource hints, without sbatch
        options of their own) do not wait for a job each: with SLURM they run in
        the submitting process (``run_without_submitting``), with SLURMGraph they
        are marked (``plugin_args[nipype_seam.QUICK]``) so that
        ``nipype_seam.grouped_slurmgraph`` runs chains of them in one job. Nodes
        with hints (masked data, estimation, permutation chunks) keep their own
        jobs and requests.

    Returns
    -------
    dict : the plugin_args. Per-node options are stored in ``node.plugin_args``.
    Calling it again (e.g. for a rerun) gives the same result, it does not pile
    options up.
    """
    plugin = plugin_name(plugin)
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
    batch_dir = batch_dir_of(workflow)
    log_opts = _log_options(batch_dir, global_tokens)
    global_tokens += log_opts
    args["sbatch_args"] = shlex.join(global_tokens)
    if plugin == "SLURMGraph":
        # a rerun submits only the nodes whose cache is not up to date: correct
        # inside nipype_seam.patched_for_run("SLURMGraph") (run_on_slurm does it)
        args.setdefault("dont_resubmit_completed_jobs", True)

    to_check = {}  # tuple of args -> node names
    for node in sorted(nipype_seam.all_nodes(workflow), key=lambda n: n.fullname):
        pa = dict(node.plugin_args or {})
        pa.pop(nipype_seam.QUICK, None)
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
        if gather_quick_nodes and not extra and user == _NO_USER_ARGS:
            if plugin == "SLURM":
                node.run_without_submitting = True
            else:
                pa[nipype_seam.QUICK] = True
        node.plugin_args = pa
        if node.run_without_submitting and plugin == "SLURM":
            continue  # no job: no options to check
        effective = (node_tokens + extra) if overwrite else (
            global_tokens + node_tokens + extra)
        shown = node.fullname  # top-level nodes know their workflow, nested ones not yet
        if nipype_seam.node_hierarchy(node).split(".")[0] != workflow.name:
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

