"""What happened to each node of a SLURM / SLURMGraph run, from the files it left.

A fresh result file means a node ran, a fresh crash file (in the crashdump folder
or the node's folder) that it failed, and a node downstream of a failure did not
run because of it. ``format_report`` writes one block per failed node (error
line, crash file, SLURM log, job) and one line per node not run.
"""

import glob
import os
import re
from dataclasses import dataclass, field

from .. import nipype_seam
from .options import MARKER, plugin_name
from .squeue import TERMINAL_STATES, active_jobs, job_states


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
    #: ran in the submitting process (``run_without_submitting``), not as a job
    local: bool = False

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


# ------------------------------------------------------------------- locating things
def workflow_dir(workflow_or_dir, name=None):
    """(workflow or None, absolute workflow folder = <base_dir>/<name>)."""
    if hasattr(workflow_or_dir, "base_dir"):
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
        crash_node = nipype_seam.crash_of_pickle(path)[0]
        return crash_node is None or crash_node.output_dir() == outdir
    except Exception:  # noqa: BLE001 - unreadable crash file: trust its name
        return True


def _find_crash(node, outdir, since):
    pattern = re.compile(r"-" + re.escape(nipype_seam.node_id(node)) + "-" + nipype_seam.CRASH_UUID + r"\.(pklz|txt)$")
    cands = []
    for d in _crash_dirs(node):
        for p in glob.glob(os.path.join(glob.escape(d), "crash-*")):
            if pattern.search(os.path.basename(p)) and (_mtime(p) or 0) >= since:
                cands.append(p)
    for p in sorted(cands, key=lambda p: _mtime(p) or 0, reverse=True):
        if _crash_is_for(p, node, outdir):
            return p
    return None


def _error_line(crash_file=None, result_file=None):
    """The last meaningful line of the traceback in a crash (or result) file."""
    lines = []
    try:
        if crash_file and crash_file.endswith(".txt"):
            with open(crash_file, errors="replace") as fp:
                lines = fp.read().splitlines()
        elif crash_file:
            lines = nipype_seam.crash_of_pickle(crash_file)[1].splitlines()
        elif result_file:
            tb = nipype_seam.result_traceback(result_file)
            lines = (tb or "").splitlines()
    except Exception as exc:  # noqa: BLE001 - a report must not fail on a bad file
        return f"(could not read {crash_file or result_file}: {exc})"
    lines = [ln.strip() for ln in lines if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b", ln):
            return ln
    return lines[-1] if lines else None


def _log_for(batch_dir, jobname, since, fallbacks=()):
    log = _newest(glob.glob(os.path.join(glob.escape(batch_dir),
                                         f"slurm-{glob.escape(jobname)}-*.out")), since)
    if log is None:
        log = _newest([p for p in fallbacks if os.path.exists(p)], since)
    return log


def _job_id_from_log(log):
    m = re.search(r"-(\d+)\.out$", log or "")
    return m.group(1) if m else None


def classify(items, since):
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
        o = NodeOutcome(name=name, status="", output_dir=outdir, local=it.get("local", False),
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
        elif fresh and nipype_seam.result_traceback(result):
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
            submitted.add(nipype_seam.batch_key_of(os.path.basename(p), "node_", ".pklz"))
    items = []
    if workflow is None:
        return items
    user = os.environ.get("LOGNAME", "")
    graph = nipype_seam.exec_graph(workflow)
    for node in nx.topological_sort(graph):
        key = nipype_seam.batch_key(node)
        items.append({
            "node": node,
            "deps": [_fullname(p) for p in graph.predecessors(node)],
            "submitted": key in submitted,
            "local": bool(node.run_without_submitting),
            "log": _log_for(batch_dir, nipype_seam.slurm_job_name(node, user), since),
        })
    states = job_states(_job_id_from_log(it["log"]) for it in items)
    active = active_jobs(batch_dir)  # jobs left behind, e.g. by stop_on_first_crash
    for it in items:
        node = it["node"]
        key = nipype_seam.batch_key(node)
        jid = _job_id_from_log(it["log"])
        st = states.get(jid or "")
        if key in active and (not jid or int(active[key][0]) >= int(jid)):
            jid, st = active[key][0], active[key][1:]
            it["job_id"] = jid
        if st:
            it["job_state"], it["job_reason"] = st
    return items


def graph_items(wf_dir, since, seen=None):
    """Per-node facts of a SLURMGraph run, from submit_jobs.sh and the node pickles.

    A grouped job runs its nodes in order and stops at the first failure: each of
    them depends on the one before it, and on every node of the jobs it waits for."""
    seen = seen or {}
    batch_dir = os.path.join(wf_dir, "batch")
    by_job = {}
    items = []
    for job in nipype_seam.parse_submit_jobs(batch_dir):
        st = seen.get(job["script"], {})
        log = _log_for(batch_dir, job["jobname"], since,
                       (job["script"] + ".o", job["script"] + ".e"))
        if not st.get("id") and log:
            known = job_states([_job_id_from_log(log)]).get(_job_id_from_log(log) or "")
            if known:
                st = {"state": known[0], "reason": known[1]}
        deps = [name for d in job["deps"] for name in by_job.get(d, [])]
        by_job[job["jobname"]] = []
        for pickle in nipype_seam.node_pickles_of_job(job["script"]):
            node = nipype_seam.node_of_pickle(pickle)
            items.append({
                "node": node, "deps": deps + by_job[job["jobname"]][-1:], "submitted": True,
                "jobname": job["jobname"], "job_id": st.get("id"),
                "job_state": st.get("state"), "job_reason": st.get("reason"), "log": log,
            })
            by_job[job["jobname"]].append(_fullname(node))
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
        where = "(none: it ran in the submitting process)" if o.local else "(not found)"
        lines.append(f"    slurm log:  {o.slurm_log or where}")
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


def since_time(workflow, wf_dir, plugin, since):
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
    plugin = plugin_name(plugin)
    workflow, wf_dir = workflow_dir(workflow_or_dir, name)
    t0 = since_time(workflow, wf_dir, plugin, since)
    if plugin == "SLURMGraph":
        return classify(graph_items(wf_dir, t0), t0)
    return classify(_slurm_plugin_items(workflow, wf_dir, t0), t0)


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
    workflow, wf_dir = workflow_dir(workflow_or_dir, name)
    t0 = since_time(workflow, wf_dir, "SLURM", since)
    if workflow is not None:
        outcomes = classify(_slurm_plugin_items(workflow, wf_dir, t0), t0)
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
    outcomes = {}
    batch_dir = os.path.join(wf_dir, "batch")
    dirs = {os.getcwd(), wf_dir, os.path.join(os.path.dirname(wf_dir), "crash")}
    for p in glob.glob(os.path.join(glob.escape(batch_dir), "node_*.pklz")):
        if (_mtime(p) or 0) >= since:
            try:
                dirs.add(nipype_seam.node_of_pickle(p).config["execution"]["crashdump_dir"])
            except Exception:  # noqa: BLE001, S112 - unreadable pickle: skip it
                continue
    for d in dirs:
        for p in glob.glob(os.path.join(glob.escape(d), "crash-*")):
            if (_mtime(p) or 0) < since:
                continue
            node, nm, outdir = None, os.path.basename(p), ""
            try:
                if p.endswith(".pklz"):
                    node = nipype_seam.crash_of_pickle(p)[0]
                    nm, outdir = _fullname(node), node.output_dir()
                else:
                    nm, outdir = nipype_seam.text_crash_header(p)
            except Exception:  # noqa: BLE001 - unreadable crash file: report by name
                nm, outdir = os.path.basename(p), ""
            if outdir and not outdir.startswith(wf_dir + os.sep):
                continue  # another workflow's crash
            log = None
            if nm.count("."):  # <hierarchy>.<id>: the SLURM plugin's job name
                jobname = nipype_seam.slurm_job_name_of(nm, os.environ.get("LOGNAME", ""))
                log = _log_for(batch_dir, jobname, since)
            outcomes[nm] = NodeOutcome(name=nm, status="failed", output_dir=outdir,
                                       crash_file=p, slurm_log=log,
                                       job_id=_job_id_from_log(log),
                                       error=_error_line(crash_file=p))
    return outcomes


