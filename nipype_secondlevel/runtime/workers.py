"""MultiProc's workers: the pool that forks them, the libraries imported before they
fork, the heap left out of the scheduler's garbage collections."""

import gc
import importlib
import multiprocessing
import os
import threading
import traceback
import warnings
from concurrent.futures import Future
from contextlib import contextmanager

from . import interrupts
from .execution import Runner

#: Python's warning (3.12) of a fork in a process that has threads.
FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"


def _failure(lines, taskid):
    """A node's failure as nipype's ``run_node`` returns it."""
    return {"result": None, "traceback": lines, "taskid": taskid}


class _FirstNode:
    """The first node, run in a process of its own (``context.Process``): its result comes
    back through a pipe, which a thread waits on to complete :attr:`future`.

    Not a second ``ProcessPoolExecutor``: the pool's workers, forked while it ran, inherited
    its exit hook, which at their exit woke its manager thread through a pipe they did not
    own ("OSError: Bad file descriptor" on the console after a Ctrl-C)."""

    def __init__(self, context, function, args):
        receive, send = context.Pipe(duplex=False)
        self.taskid = args[-1]
        self.future = Future()
        self.future.set_running_or_notify_cancel()
        self.process = context.Process(target=_run_first, name="first node",
                                       args=(send, os.getcwd(), function, *args))
        self.process.start()
        send.close()  # the process's end only: its exit is the end of the pipe
        self.thread = threading.Thread(target=self._wait, args=(receive,), daemon=True)
        self.thread.start()

    def _wait(self, receive):
        with receive:
            try:
                result = receive.recv()
            except (EOFError, OSError):  # it ended without sending its result
                self.process.join()
                why = f"the node's process ended (exit code {self.process.exitcode})"
                result = _failure([why + " without its result\n"], self.taskid)
        self.process.join()
        self.future.set_result(result)


def _run_first(send, cwd, function, *args):
    from nipype.pipeline.plugins.multiproc import process_initializer

    process_initializer(cwd)
    result = interrupts.run_in_worker(function, *args)
    with send:
        try:
            send.send(result)
        except Exception as err:  # noqa: BLE001 - a result that cannot be pickled
            send.send(_failure(traceback.format_exception(err), args[-1]))


class _WorkerPool:
    """MultiProc's process pool, each node run through ``interrupts.run_in_worker``.

    At the first node this process imports nilearn's core (:data:`CORE_IMPORTS`), which
    almost every node needs, then forks a process of its own for that node, and imports
    the pictures' libraries (:data:`FORKED_IMPORTS`) while it runs, on a second core, off
    the first node's path; the pool's workers fork with both at the next node. A first
    node that needs only nilearn's core imports nothing twice. A first node whose
    interface imports none of nilearn (its ``imports_nilearn`` False: the demo's
    simulation) forks at once, and this process imports both while it runs. A rerun
    from the cache imports none. ``context``: the multiprocessing context of the pool
    (MultiProc's ``mp_context``)."""

    def __init__(self, pool, context=None):
        self.pool, self.context = pool, context
        self.first = None
        self.spare = frozenset()  # this process's children from before: a script's own

    def submit(self, function, *args):
        if self.first is None:
            self.spare = frozenset(c.pid for c in multiprocessing.active_children())
            core_first = getattr(args[0].interface, "imports_nilearn", True)  # run_node's
            if core_first:
                import_node_libraries(CORE_IMPORTS)
            self.first = _FirstNode(self.context, function, args)
            import_node_libraries(FORKED_IMPORTS if core_first else CORE_IMPORTS + FORKED_IMPORTS)
            return self.first.future
        with warnings.catch_warnings():
            # Python 3.12 warns of a fork beside other threads: the one waiting for the
            # first node's result, blocked reading its pipe, holds no lock.
            warnings.filterwarnings("ignore", FORK_WARNING, DeprecationWarning)
            return self.pool.submit(interrupts.run_in_worker, function, *args)

    def shutdown(self, wait=True, **kwargs):
        if self.first is not None and wait:
            self.first.thread.join()
        return self.pool.shutdown(wait=wait, **kwargs)


class MultiProcRunner(Runner):
    """MultiProc: a stop signal stops the workers' nodes; the pool is shut down. Quick
    nodes that draw (their interface's ``draws``) run in a worker, beside the first node,
    not in this process, where they would keep the scheduler from polling while they draw
    (the cold demo: 0.89x the wall and CPU time of the design drawn here, paired runs at
    load average 4 to 8)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        context = multiprocessing.get_context(self.plugin_args.get("mp_context"))
        self.pool = _WorkerPool(self.pool, context)

    def prepare(self, graph):
        for node in graph.nodes():
            if node.run_without_submitting and getattr(node.interface, "draws", False):
                node.run_without_submitting = False

    def stop(self, interrupted):
        interrupts.stop_workers(self.pool, interrupted, self.pool.spare)


#: nilearn's core, which the nodes of every run import (reading, resampling and masking
#: maps: ``nilearn.image`` imports scikit-learn and scipy.stats through nilearn's logger,
#: 1.6 s of the 2 s): imported before the first node's process forks (after it, when
#: that node's interface imports none of nilearn).
CORE_IMPORTS = ("nilearn.image", "nilearn.datasets", "scipy.ndimage", "scipy.stats")
#: Libraries that only later nodes import (pictures, thresholds, nilearn's reporting):
#: imported while the first node runs, before the pool's workers fork.
FORKED_IMPORTS = ("matplotlib.pyplot", "nilearn.plotting", "nilearn.glm", "nilearn.reporting")


def import_node_libraries(names):
    """Import the modules ``names`` (pyplot on Agg: pictures are written to files, never
    shown), frozen out of garbage collections (see :func:`frozen_heap`).

    No collection runs while they are imported: what an import makes is kept (modules,
    classes, functions), so scanning it finds next to nothing, and took 12% of the time
    of the demo's imports."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        for name in names:
            if name == "matplotlib.pyplot":
                importlib.import_module("matplotlib").use("Agg")
            importlib.import_module(name)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


@contextmanager
def frozen_heap(freeze=True):
    """Objects made so far (modules, the workflow) left out of garbage collections.

    nipype's MultiProc scheduler runs a full ``gc.collect()`` at every poll while
    nodes run (every 20 ms here): over the heap of numpy, scipy and nipype that
    was most of a run's CPU time. Frozen objects are not scanned (``gc.freeze``);
    what the run makes is still collected. The libraries the nodes import are
    frozen too when they are imported, before the pool's workers fork
    (:class:`_WorkerPool`).
    """
    if not freeze:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
