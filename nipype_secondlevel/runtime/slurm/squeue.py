"""What the SLURM queue says about jobs (squeue only: no accounting database needed)."""

import getpass
import os
import shlex
import shutil
import subprocess

from .. import nipype_seam

#: job states after which a job never runs again
TERMINAL_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT",
}


def squeue(args, timeout=30):
    """Output of ``squeue -h <args>`` (RuntimeError when squeue fails)."""
    cmd = ["squeue", "-h", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def job_states(job_ids):
    """{job id: (state, reason)} for jobs slurmctld still remembers (best effort)."""
    ids = sorted({j for j in job_ids if j})
    if not ids or not shutil.which("squeue"):
        return {}
    try:
        out = squeue(["-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def active_jobs(batch_dir):
    """{"<hierarchy>_<id>": (job id, state, reason)} of this folder's queued/running jobs."""
    if not shutil.which("squeue"):
        return {}
    try:
        user = os.environ.get("LOGNAME") or getpass.getuser()
        out = squeue(["-u", user, "-o", "%i|%T|%r|%o"])
    except (OSError, KeyError, RuntimeError, subprocess.SubprocessError):
        return {}
    prefix = nipype_seam.batch_script_prefix(batch_dir)
    active = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 3)
        key = nipype_seam.batch_key_of(parts[3], prefix, ".sh") if len(parts) == 4 else None
        if key is not None and (key not in active or int(parts[0]) > int(active[key][0])):
            active[key] = (parts[0], parts[1], parts[2])
    return active
