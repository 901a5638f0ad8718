"""Run the nipype-secondlevel command and stop it dead at a chosen point, to be killed there.

    python interrupt_driver.py POINT MARKER -- demo --out-dir ... --work-dir ...

When the run reaches POINT, this writes MARKER (its PID inside) and sleeps until
it is killed: the test watches for MARKER and sends SIGKILL. The command itself
is the unmodified ``nipype_secondlevel.cli.main``; only these pauses are added.

Points:
  simulate  the 5th simulated map is written to its temporary name, not renamed
  estimate  the 3rd voxel chunk of the estimation has been read
  result    nipype is writing the estimate node's result file (half of it written)
  hashfile  the estimate node's result file is written; nipype has not yet marked
            the node finished (its "_unfinished" hash file is still there)
  scratch   the private folder the p map is written in is made; its writer has not
            started (nor set up its clean-up)
  sink      the 3rd exported file is written to its temporary name in the output
            folder, not renamed
  lock      the work folder's lock is taken and its record (who holds it) written,
            not yet flushed to disk
  fork      MultiProc's pool has forked its first worker, not yet the others (nor
            started the thread that would give them nodes)

The driver dies with the process that started it (a stopped test run leaves no
driver paused forever), and so do the run's MultiProc workers.
"""

import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def main():
    from nipype_secondlevel.runtime.interrupts import die_with_parent
    from nipype_secondlevel.runtime.locking import pid_alive

    parent = os.getppid()
    die_with_parent(parent)
    point, marker = sys.argv[1], Path(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    out_dir = Path(args[args.index("--out-dir") + 1]).absolute()
    counts = {}

    def pause():
        marker.write_text(str(os.getpid()))
        while pid_alive(parent):  # the test that started the driver
            time.sleep(0.2)
        os._exit(1)

    def nth(key, n):
        counts[key] = counts.get(key, 0) + 1
        return counts[key] == n

    import nipype_secondlevel.interfaces  # noqa: F401  (every module that writes files)
    from nipype_secondlevel.io import files, masked_data

    def patch(name, replacement):
        # every module that imported the function by name
        original = getattr(files if name == "atomic_path" else masked_data, name)
        for module in list(sys.modules.values()):
            if (getattr(module, "__name__", "").startswith("nipype_secondlevel")
                    and getattr(module, name, None) is original):
                setattr(module, name, replacement)

    original_atomic_path = files.atomic_path

    @contextmanager
    def atomic_path(path):
        with original_atomic_path(path) as tmp:
            yield tmp
            path = Path(path)
            simulated = path.name.endswith("_effect.nii.gz")
            if point == "simulate" and simulated and nth("simulate", 5):
                pause()
            if point == "sink" and out_dir in path.absolute().parents and nth("sink", 3):
                pause()

    patch("atomic_path", atomic_path)

    original_read = masked_data.read_voxel_chunk

    def read_voxel_chunk(*a, **k):
        chunk = original_read(*a, **k)
        if point == "estimate" and nth("estimate", 3):
            pause()
        return chunk

    patch("read_voxel_chunk", read_voxel_chunk)

    original_mkdir = os.mkdir

    def mkdir(path, *a, **k):
        original_mkdir(path, *a, **k)
        if point == "scratch" and Path(path).name.startswith(".p.nii.gz."):
            pause()

    os.mkdir = mkdir

    original_fsync = os.fsync

    def fsync(fd):
        original_fsync(fd)
        if point == "lock" and os.readlink(f"/proc/self/fd/{fd}").endswith(".lock") \
                and nth("lock", 1):
            pause()

    os.fsync = fsync

    import multiprocessing.process

    original_start = multiprocessing.process.BaseProcess.start

    def start(self):
        original_start(self)
        if point == "fork" and nth("fork", 1):
            pause()

    multiprocessing.process.BaseProcess.start = start

    from nipype.pipeline.engine import utils as engine_utils

    original_savepkl = engine_utils.savepkl

    def savepkl(filename, record, *a, **k):
        if point == "result" and filename.endswith("result_estimate.pklz"):
            original_savepkl(filename, record, *a, **k)
            data = Path(filename).read_bytes()
            Path(filename).unlink()
            # nipype writes <name>.tmp and renames it: stop half-way through the write.
            Path(filename + ".tmp").write_bytes(data[: len(data) // 2])
            pause()
        return original_savepkl(filename, record, *a, **k)

    engine_utils.savepkl = savepkl

    original_move = shutil.move

    def move(src, dst, *a, **k):
        if (point == "hashfile" and str(src).endswith("_unfinished.json")
                and f"{os.sep}estimate{os.sep}" in str(src)):
            pause()
        return original_move(src, dst, *a, **k)

    shutil.move = move

    from nipype_secondlevel.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
