"""Make Nipype's SLURM and SLURMGraph plugins "just work".

Typical use: ``run_on_slurm(wf, "SLURM" | "SLURMGraph", sbatch_args="--time=60")``,
which does what the project's run function does::

    args = prepare_slurm_run(wf, "SLURM", sbatch_args="--time=60")
    with nipype_seam.patched_for_run("SLURM"):
        try:
            wf.run(plugin="SLURM", plugin_args=args)
        except RuntimeError as exc:
            raise slurm_run_error(wf, exc) from exc

    args = prepare_slurm_run(wf, "SLURMGraph")
    with nipype_seam.patched_for_run("SLURMGraph"):    # nipype's check fixed, then restored
        wf.run(plugin="SLURMGraph", plugin_args=args)  # returns right after sbatch
    wait_for_slurmgraph(wf, timeout=3600)              # waits, raises SlurmRunError

Modules: ``options`` (sbatch options, per-node hints, ``prepare_slurm_run``),
``squeue`` (the queue), ``outcomes`` (what happened to each node, the report),
``wait`` (``wait_for_slurmgraph``).

What the helpers take care of (nipype 1.11):

- the SLURM plugin needs ``LOGNAME`` in the environment (``KeyError`` otherwise);
  ``NIPYPE_NO_ET`` keeps the jobs from trying to reach the network;
- the SLURM plugin polls ``squeue`` every ``execution.poll_sleep_duration`` s (a
  config value, not a plugin_arg; nipype's default is 2 s);
- SLURMGraph crashes with ``AttributeError`` when ``dont_resubmit_completed_jobs``
  is not given; we pass ``True`` so a rerun only submits nodes whose cache is
  not valid (the failed ones and everything downstream of them). nipype's own
  check for that treats an OUTDATED cache as done (a changed parameter would be
  silently ignored), so the run goes inside ``nipype_seam.patched_for_run``, which
  replaces it with a correct one for the time of the run;
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

from .. import nipype_seam
from .options import plugin_name, prepare_slurm_run
from .outcomes import NodeOutcome, SlurmRunError, collect_outcomes, slurm_run_error
from .wait import wait_for_slurmgraph

__all__ = [
    "NodeOutcome",
    "SlurmRunError",
    "collect_outcomes",
    "prepare_slurm_run",
    "run_on_slurm",
    "slurm_run_error",
    "wait_for_slurmgraph",
]


def run_on_slurm(workflow, plugin="SLURM", sbatch_args="", poll_interval=0.5, plugin_args=None,
                 timeout=None):
    """prepare_slurm_run + workflow.run + (SLURMGraph) wait, with per-node errors.

    Returns {node name: NodeOutcome}; raises SlurmRunError naming each failed
    node (crash file, SLURM log) and the nodes not run because of it.
    """
    plugin = plugin_name(plugin)
    args = prepare_slurm_run(workflow, plugin, sbatch_args=sbatch_args,
                             poll_interval=poll_interval, plugin_args=plugin_args)
    with nipype_seam.patched_for_run(plugin):
        if plugin == "SLURM":
            try:
                workflow.run(plugin="SLURM", plugin_args=args)
            except RuntimeError as exc:
                raise slurm_run_error(workflow, exc) from exc
            return collect_outcomes(workflow, "SLURM")
        workflow.run(plugin="SLURMGraph", plugin_args=args)
    return wait_for_slurmgraph(workflow, timeout=timeout, poll_interval=poll_interval)
