"""Shared by the benchmark scripts: wall time of a whole command."""

import subprocess
import time


def timed_command(command):
    """Seconds a command takes as a new process (imports included); fails if it fails."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start
