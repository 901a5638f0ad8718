"""Shared by the benchmark scripts: wall time of a whole command."""

import resource
import subprocess
import time


def timed_command(command):
    """Seconds a command takes as a new process (imports included); fails if it fails."""
    return run_command(command)[0]


def run_command(command):
    """(wall seconds, CPU seconds of its process tree) of a command as a new process.

    The CPU time is user + system of the command and every descendant it waited
    for (MultiProc workers included); fails if the command fails.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu
