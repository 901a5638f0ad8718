"""MultiProc's workers: the pool that forks them, the libraries imported before they
fork, the heap left out of the scheduler's garbage collections."""

import gc
import importlib
import multiprocessing
import os
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from . import interrupts
from .execution import Runner

#: Python's warning (3.12) of a fork in a process that has threads.
FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"


def run_node(function, *args):
    """nipype's ``run_node(node, updatehash, taskid)`` in a worker, through
    :func:`.interrupts.run_in_worker`. What it raises (``run_node`` reading back the
    result file its node could not write, on a full disk) is returned as the node's
    failure, as ``run_node`` returns any other: raised, nipype's callback would log it
    on the console with its traceback and never hand the scheduler the node's end."""
    try:
        return interrupts.run_in_worker(function, *args)
    except Exception as err:  # noqa: BLE001 - any error is the node's failure
        return {"result": None, "traceback": traceback.format_exception(err),
                "taskid": args[-1]}


class _WorkerPool:
    """MultiProc's process pool, each node run through :func:`run_node`.

    The first node runs in a process of its own, forked at once, before the libraries
    the nodes import; while it runs, this process imports them
    (:func:`import_node_libraries`: on a second core, off the first node's path) and
    the pool's workers fork with them at the next node. A rerun from the cache imports
    none. ``context``: the multiprocessing context of the pool (MultiProc's
    ``mp_context``)."""

    def __init__(self, pool, context=None):
        self.pool, self.context = pool, context
        self.first = None
        self.spare = frozenset()  # this process's children from before: a script's own

    def submit(self, function, *args):
        if self.first is not None:
            with warnings.catch_warnings():
                # Python 3.12 warns of a fork beside other threads: those of the first
                # node's pool (its manager and its queue's feeder), which hold no lock
                # that the pool's workers take.
                warnings.filterwarnings("ignore", FORK_WARNING, DeprecationWarning)
                return self.pool.submit(run_node, function, *args)
        from nipype.pipeline.plugins.multiproc import process_initializer

        self.spare = frozenset(c.pid for c in multiprocessing.active_children())
        self.first = ProcessPoolExecutor(1, mp_context=self.context,
                                         initializer=process_initializer,
                                         initargs=(os.getcwd(),))
        future = self.first.submit(run_node, function, *args)
        self.first.shutdown(wait=False)  # its worker ends with the node
        import_node_libraries()
        return future

    def shutdown(self, *args, **kwargs):
        if self.first is not None:
            self.first.shutdown(*args, **kwargs)
        return self.pool.shutdown(*args, **kwargs)


class MultiProcRunner(Runner):
    """MultiProc: a stop signal stops the workers' nodes; the pool is shut down. Quick
    nodes that draw (their interface's ``draws``) run in a worker, not in this process:
    here they would import matplotlib before the first node's process forks, or keep the
    scheduler from polling while they draw."""

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


#: Libraries that nodes import as they run (pictures, nilearn's reporting).
FORKED_IMPORTS = ("matplotlib.pyplot", "nilearn.plotting", "nilearn.glm", "nilearn.reporting")


def import_node_libraries():
    """Import :data:`FORKED_IMPORTS` (matplotlib on Agg: pictures are written to files,
    never shown), frozen out of garbage collections (see :func:`frozen_heap`)."""
    import matplotlib

    matplotlib.use("Agg")
    for name in FORKED_IMPORTS:
        importlib.import_module(name)
    gc.freeze()


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
