"""Waiting for the jobs of a SLURMGraph run (it returns as soon as they are submitted)."""

import getpass
import os
import subprocess
import time

from .. import nipype_seam
from .outcomes import SlurmRunError, classify, format_report, graph_items, since_time, workflow_dir
from .squeue import TERMINAL_STATES, squeue


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
    workflow, wf_dir = workflow_dir(workflow_or_base_dir, name)
    batch_dir = os.path.join(wf_dir, "batch")
    if not os.path.exists(os.path.join(batch_dir, "submit_jobs.sh")):
        raise FileNotFoundError(f"{batch_dir}/submit_jobs.sh not found: did "
                                f"workflow.run(plugin='SLURMGraph') run in {wf_dir}?")
    since = since_time(workflow, wf_dir, "SLURMGraph", None)
    jobs = nipype_seam.parse_submit_jobs(batch_dir)
    scripts = {j["script"] for j in jobs}
    names = sorted({j["jobname"] for j in jobs})
    user = os.environ.get("LOGNAME") or getpass.getuser()
    seen = {}  # script -> {"id", "state", "reason"}
    cancelled = set()
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    errors = 0
    while names:
        try:
            out = squeue(["-t", "all", "-u", user, "--name", ",".join(names),
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
    outcomes = classify(graph_items(wf_dir, since, seen), since)
    for o in outcomes.values():
        if o.job_id in cancelled and o.status == "not_run":
            o.job_state = (o.job_state or "CANCELLED") + " by wait_for_slurmgraph"
    if raise_on_failure and any(not o.ok for o in outcomes.values()):
        title = f"SLURMGraph run of workflow {os.path.basename(wf_dir)!r} ({wf_dir})"
        raise SlurmRunError(format_report(outcomes, title), outcomes)
    return outcomes
