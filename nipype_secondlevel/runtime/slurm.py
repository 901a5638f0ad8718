"""nipype's SLURM and SLURMGraph plugins, subclassed so that they "just work".

- **Options.** ``--sbatch-args`` go to every job; each node's resource hints
  (``mem_gb``, ``n_procs``) become its own ``--mem`` / ``--cpus-per-task`` unless
  the node's or the user's options say otherwise; every job logs to
  ``<workflow>/batch/slurm-<job name>-<job id>.out``. ``sbatch --test-only`` refuses,
  before the first node, options the cluster can never satisfy (SLURMGraph would
  drop such a job silently).
- **Quick nodes** (no hints, no options of their own) wait for no job of their own:
  with SLURM they run in the submitting process, with SLURMGraph chains of them
  share a job (:func:`job_groups`); heavy nodes keep their own jobs and requests.
- **SLURMGraph** submits only the nodes whose cache is not up to date (nipype's own
  check counts an outdated cache as done), waits for the jobs (nipype returns once
  they are submitted), and cancels jobs whose dependency failed (they would stay
  pending forever on a cluster without ``kill_invalid_depend``).
- **Failures** are reported per node (:class:`Outcome`): a failed node with its
  error, crash file, SLURM log and job; the nodes not run because of it.
- **Stopping**: the jobs a run submitted are cancelled when it is interrupted
  (Ctrl-C, SIGTERM) or fails.
"""

import copy
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..io.errors import bad_input
from .execution import Runner, WorkflowFailed, innermost_error, ran_since, read_crash_file

#: nipype's default resource hints: nodes still at these get no per-node option
DEFAULT_MEM_GB = 0.2
DEFAULT_N_PROCS = 1
#: job states after which a job never runs again
TERMINAL_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                   "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT"}


def _split(args, what):
    try:
        return shlex.split(args or "")
    except ValueError as exc:
        raise bad_input(what, f"cannot parse {args!r}: {exc}") from None


def _has_opt(tokens, short, long):
    """True when ``tokens`` really hold option -x / --long (not just the substring)."""
    return any((short and tok.startswith(short) and not tok.startswith("--"))
               or tok == long or tok.startswith(long + "=") for tok in tokens)


def _log_options(batch_dir, tokens):
    """--output/--error so that a job logs to batch/slurm-<job name>-<job id>.out,
    unless the options already say where."""
    if _has_opt(tokens, "-o", "--output") or _has_opt(tokens, "-e", "--error"):
        return []
    # sbatch expands %x (job name) and %j (job id); a literal % must be doubled
    path = os.path.join(str(batch_dir).replace("%", "%%"), "slurm-%x-%j.out")
    return ["--output=" + path, "--error=" + path]


def hint_options(node, global_tokens, node_tokens):
    """Per-node sbatch options from node.mem_gb / node.n_procs (defaults: none)."""
    opts = []
    n_procs = node.n_procs or 1
    if n_procs != DEFAULT_N_PROCS and not _has_opt(node_tokens, "-c", "--cpus-per-task"):
        opts.append(f"--cpus-per-task={n_procs}")
    mem = ("--mem", "--mem-per-cpu", "--mem-per-gpu")
    if node.mem_gb and abs(node.mem_gb - DEFAULT_MEM_GB) > 1e-9 and not any(
            _has_opt(node_tokens, None, o) for o in mem):
        mb = math.ceil(node.mem_gb * 1024)
        if any(_has_opt(global_tokens, None, o) for o in mem[1:]):  # exclusive with --mem
            opts.append(f"--mem-per-cpu={math.ceil(mb / n_procs)}M")
        else:
            opts.append(f"--mem={mb}M")
    return opts


def _sbatch_test(args, nodes):
    """``sbatch --test-only``: refuse options the cluster can never satisfy, up front."""
    cmd = ["sbatch", "--test-only", *args, "--wrap", "true"]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise bad_input("--plugin SLURM", f"could not run {shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split())
        if "Unable to contact slurm controller" in msg:
            raise bad_input("--plugin SLURM", f"cannot reach the SLURM controller (is the "
                            f"cluster up?): {msg}")
        raise bad_input("--sbatch-args", f"SLURM refuses the options {shlex.join(args)!r} "
                        f"of node(s) {', '.join(sorted(nodes))}: {msg}")


def _squeue_states(job_ids):
    """{job id: (state, reason)} for jobs slurmctld still remembers (None: squeue failed)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    try:
        proc = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o",
                               "%i|%T|%r"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None
    return {i: (s.split()[0], r) for i, s, r in (
        line.strip().split("|") for line in proc.stdout.splitlines() if line.count("|") == 2)}


def _scancel(job_ids):
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *sorted(set(job_ids))], check=False, capture_output=True,
                       timeout=30)


@dataclass
class Outcome:
    """What happened to one node of a SLURM / SLURMGraph run: ``status`` is "ran",
    "cached", "failed" or "not_run" (see ``blocked_by`` and ``error``)."""

    name: str
    status: str
    crash_file: str | None = None
    slurm_log: str | None = None
    job_id: str | None = None
    job_state: str | None = None
    error: str | None = None
    blocked_by: list = field(default_factory=list)
    local: bool = False  # ran in the submitting process, not as a job

    @property
    def ok(self):
        return self.status in ("ran", "cached")


def up_to_date(node, honour_overwrite=True):
    """True when nipype would take ``node`` from the cache (a result present and up to
    date; not a node told to run again)."""
    if honour_overwrite and (node.overwrite or (
            node.overwrite is None and node.interface.always_run)):
        return False
    try:
        return tuple(node.is_cached()) == (True, True)
    except Exception:  # noqa: BLE001 - e.g. upstream results missing: not done
        return False


def _within(mapping, folder):
    """The value of ``mapping`` ({folder: value}) for ``folder`` or a folder in it."""
    return next((v for f, v in mapping.items() if Path(f).is_relative_to(folder)), None)


class _Cluster(Runner):
    """What both SLURM plugins share: options, job records, cancelling, the report."""

    title = "SLURM"

    def __init__(self, plugin_args=None, **context):
        args = dict(plugin_args or {})
        tokens = _split(args.get("sbatch_args"), "--sbatch-args")
        self.global_tokens = tokens + _log_options(context["batch_dir"], tokens)
        args["sbatch_args"] = shlex.join(self.global_tokens)
        self.jobs = {}  # node folder: job id
        self.since = time.time()
        super().__init__(args, **context)

    def node_tokens(self, node):
        """(the node's own sbatch options, with its hints; quick: no options at all)."""
        pa = node.plugin_args or {}
        own = _split(pa.get("sbatch_args"), f"node {node.fullname} plugin_args['sbatch_args']")
        extra = hint_options(node, [] if pa.get("overwrite") else self.global_tokens, own)
        if pa.get("overwrite"):  # the node's options replace the global ones
            extra += _log_options(self.batch_dir, own + extra)
        return own + extra, not (own or extra)

    def check(self, nodes):
        """``sbatch --test-only`` once per distinct set of options of ``nodes``."""
        if not shutil.which("sbatch"):
            return
        sets = {}
        for node in nodes:
            tokens, _ = self.node_tokens(node)
            overwrite = (node.plugin_args or {}).get("overwrite")
            sets.setdefault(tuple(tokens if overwrite else self.global_tokens + tokens),
                            []).append(node.fullname)
        for tokens, names in sets.items():
            _sbatch_test(list(tokens), names)

    def stop(self, interrupted):
        _scancel(self.jobs.values())

    def outcomes(self, graph, states=None):
        """{node name: Outcome} of the nodes of ``graph``, in topological order."""
        import networkx as nx

        crash_dir = Path(self.work_dir) / "crash"
        crashes = {}
        for path in crash_dir.glob("*") if crash_dir.is_dir() else []:
            if path.stat().st_mtime >= self.since - 1:
                lines = path.read_text(errors="replace").splitlines()[:2]
                folder = lines[1].removeprefix("Working directory: ") if len(lines) > 1 else ""
                crashes[folder] = str(path)
        states = states if states is not None else (_squeue_states(self.jobs.values()) or {})
        outcomes, failed_in_job = {}, {}
        for node in nx.topological_sort(graph):
            folder = node.output_dir()
            job = _within(self.jobs, folder)
            o = Outcome(node.fullname, "", crash_file=_within(crashes, folder), job_id=job,
                        local=bool(node.run_without_submitting))
            o.job_state = states.get(job, (None,))[0] if job else None
            logs = sorted(self.batch_dir.glob(f"slurm-*-{job}.out")) if job else []
            o.slurm_log = str(logs[-1]) if logs else None
            bad = [outcomes[p.fullname] for p in graph.predecessors(node)
                   if not outcomes[p.fullname].ok]
            if up_to_date(node, honour_overwrite=False):
                o.status = "ran" if ran_since(node, self.since) else "cached"
            elif bad:
                o.status = "not_run"
                o.blocked_by = list(dict.fromkeys(
                    r for b in bad for r in ([b.name] if b.status == "failed" else b.blocked_by)))
                o.error = f"because {', '.join(b.name for b in bad)} did not run"
            elif job in failed_in_job:  # a grouped job stops at its first failure
                o.status, o.blocked_by = "not_run", [failed_in_job[job]]
            elif o.crash_file or o.job_state in TERMINAL_STATES - {"COMPLETED", "CANCELLED"}:
                o.status = "failed"
                o.error = (read_crash_file(o.crash_file)[1] if o.crash_file else
                           f"SLURM job {job} ended {o.job_state} without a crash file")
                if job:
                    failed_in_job.setdefault(job, o.name)
            else:
                o.status = "not_run"
                o.error = ("cancelled: the run stopped before it ended" if job else
                           "never started: the run stopped before it")
            outcomes[o.name] = o
        return outcomes

    def report(self, outcomes, said=None):
        """WorkflowFailed with one block per failed node, one line per node not run."""
        failed = [o for o in outcomes.values() if o.status == "failed"]
        not_run = [o for o in outcomes.values() if o.status == "not_run"]
        n_ok = sum(o.ok for o in outcomes.values())
        lines = [f"{self.title} run of workflow {self.batch_dir.parent.name!r} "
                 + f"({self.batch_dir.parent}): {len(failed)} node(s) failed, "
                 + f"{len(not_run)} not run ({n_ok} ok)."]
        for o in failed:
            where = "(none: it ran in the submitting process)" if o.local else "(not found)"
            lines += [f"FAILED  {o.name}", f"    error:      {o.error}",
                      f"    crash file: {o.crash_file or '(none)'}",
                      f"    slurm log:  {o.slurm_log or where}"]
            if o.job_id:
                lines.append(f"    slurm job:  {o.job_id} {o.job_state or ''}".rstrip())
        for o in not_run:
            why = f"because {', '.join(o.blocked_by)} failed" if o.blocked_by else o.error
            job = f"; SLURM job {o.job_id} {o.job_state or ''}".rstrip() if o.job_id else ""
            lines.append(f"NOT RUN {o.name} ({why}{job})")
        if not failed and said:
            lines.append(f"No failed node found; nipype said: {said}")
        return WorkflowFailed("\n".join(lines))

    def failure(self, err, crash_dir, since):
        return self.report(self.outcomes(self.graph),
                           innermost_error(str(err)) if self.graph is not None else str(err))


class SlurmRunner(_Cluster):
    """nipype's SLURM plugin: per-node options, quick nodes in this process, job ids kept."""

    def prepare(self, graph):
        if re.search(r"\s", str(self.work_dir)):
            raise bad_input(f"--work-dir {self.work_dir}", "SLURM cannot run in a folder with "
                            "white space (nipype builds unquoted sbatch commands)")
        jobs = []
        for node in graph.nodes():
            tokens, quick = self.node_tokens(node)
            if quick:
                node.run_without_submitting = True
            else:
                node.plugin_args = {**(node.plugin_args or {}), "sbatch_args": shlex.join(tokens)}
                jobs.append(node)
        self.check(jobs)

    def _submit_batchtask(self, scriptfile, node):
        taskid = super()._submit_batchtask(scriptfile, node)
        self.jobs[node.output_dir()] = str(taskid)
        return taskid


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


class SlurmGraphRunner(_Cluster):
    """nipype's SLURMGraph plugin: our submission (up-to-date nodes skipped, quick nodes
    grouped, job ids kept), then waiting for the jobs."""

    title = "SLURMGraph"

    def _submit_graph(self, pyfiles, dependencies, nodes):
        # (on copies: a node that computed its hash keeps the inputs it read then)
        done = [bool(self.plugin_args.get("dont_resubmit_completed_jobs", True))
                and up_to_date(copy.deepcopy(node)) for node in nodes]
        for i in range(len(nodes)):  # done only if what it needs is done too
            done[i] = done[i] and all(done[d] for d in dependencies.get(i, []))
        self.check(n for n, d in zip(nodes, done, strict=True) if not d)
        groups, waits = job_groups(nodes, dependencies, done,
                                   lambda node: self.node_tokens(node)[1])
        template = self.plugin_args.get("template", "#!/bin/bash")
        if os.path.isfile(template):
            template = Path(template).read_text()
        runner = "import runpy, sys; [runpy.run_path(p) for p in sys.argv[1:]]"
        group_jobs = []
        for g, members in enumerate(groups):
            first = nodes[members[0]]
            script = Path(pyfiles[members[0]]).with_suffix(".sh")
            command = [sys.executable, "-c", runner, *(pyfiles[i] for i in members)]
            script.write_text(f"{template.rstrip()}\n{shlex.join(command)}\n")
            tokens, _ = self.node_tokens(first)
            if not (first.plugin_args or {}).get("overwrite"):
                tokens = self.global_tokens + tokens
            deps = ":".join(group_jobs[w] for w in waits[g])
            name = re.sub(r"\W", "_", f"j{members[0]}_{first.name}")
            proc = subprocess.run(["sbatch", "--parsable", *tokens,
                                   *([f"--dependency=afterok:{deps}"] if deps else []),
                                   "-J", name, str(script)],
                                  capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"sbatch refused the job of {first.fullname}: "
                                   + " ".join(proc.stderr.split()))
            group_jobs.append(proc.stdout.strip().split(";")[0])
            for i in members:
                self.jobs[nodes[i].output_dir()] = group_jobs[-1]

    def finish(self):
        """Wait until no job is pending or running (cancelling those whose dependency
        failed); raise the per-node report if a node failed or did not run."""
        states, errors = {}, 0
        while True:
            found = _squeue_states(self.jobs.values())
            errors = errors + 1 if found is None else 0
            if errors > 20:
                raise RuntimeError("cannot query squeue for the SLURMGraph jobs")
            states.update(found or {})
            active = {j: s for j, s in states.items() if s[0] not in TERMINAL_STATES}
            _scancel(j for j, (_, reason) in active.items()
                     if reason == "DependencyNeverSatisfied")
            if found is not None and not active:
                break
            time.sleep(self.poll)
        outcomes = self.outcomes(self.graph, states)
        if any(not o.ok for o in outcomes.values()):
            raise self.report(outcomes)
