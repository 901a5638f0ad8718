"""A damaged cache heals on the next run; a node folder that is a link stops it.

Nipype takes a node from the cache when the hash of its inputs matches the one it
stored; it does not look at the files the node wrote. A result file cut short, an
output file deleted (a scratch purge) or changed after the node finished (a
truncated or rewritten ``masked_data.npy``) would then be trusted on every rerun,
or fail in a node that did nothing wrong.

:func:`heal` runs on the graph nipype is about to execute, before the first node:
it reads every node's stored result (``node.result``) and checks that it loads and
that every file of the work folder its outputs name exists and did not change
after the node finished (``runtime.endTime``). A node failing the check is run
again (``node.overwrite``: nothing is deleted here); the files it rewrites change
the inputs' hashes of the nodes that read them, so nipype runs those again too.
"""

import os
from datetime import datetime
from pathlib import Path

from ..io.errors import InputError


def _paths(value):
    """Absolute paths (str) in a node's output value (lists, tuples, dicts nested)."""
    if isinstance(value, str):
        if value.startswith("/"):
            yield Path(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _paths(item)


def _runtimes(result):
    runtime = getattr(result, "runtime", None)
    return runtime if isinstance(runtime, list) else [runtime]


def run_times(result):
    """(first start, last end) of a node's result (MapNodes: over their items), as
    aware datetimes; None where the result has none."""
    starts = [r.startTime for r in _runtimes(result) if getattr(r, "startTime", None)]
    ends = [r.endTime for r in _runtimes(result) if getattr(r, "endTime", None)]
    return (datetime.fromisoformat(min(starts)) if starts else None,
            datetime.fromisoformat(max(ends)) if ends else None)


def result_problem(node, work_dir):
    """Why the stored result of ``node`` cannot be trusted, or None (also None when it
    has none, or a failed one: nipype runs such a node anyway)."""
    try:
        result = node.result
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - cut short, garbled: any unpickling error
        return f"its result file cannot be read ({type(err).__name__})"
    if any(getattr(r, "traceback", None) for r in _runtimes(result)):
        return None
    outputs = getattr(result, "outputs", None)
    _, finished = run_times(result)
    if outputs is None or finished is None:
        return "its result is incomplete"
    # A TraitedSpec, or a Bunch (MapNodes, function nodes)
    values = outputs.trait_get() if hasattr(outputs, "trait_get") else dict(vars(outputs))
    for path in _paths(values):
        if not Path(os.path.realpath(path)).is_relative_to(work_dir):
            continue  # the user's files and the results folder: not the cache's
        if not path.exists():
            return f"{path.name} is missing"
        if path.is_file() and path.stat().st_mtime > finished.timestamp():
            return f"{path.name} changed after the node finished"
    return None


def heal(graph, work_dir, say=None):
    """Check the nodes of ``graph`` (nipype's execution graph) in ``work_dir``: a node
    folder outside the work folder's real path (a link) is refused; a node whose
    stored result cannot be trusted runs again. ``say(node, why)`` is told of each.
    Returns {node full name: why}."""
    work_dir = Path(os.path.realpath(work_dir))
    rerun = {}
    for node in graph.nodes():
        folder = Path(node.output_dir())  # nipype resolves links in it
        if not folder.is_relative_to(work_dir):
            raise InputError(f"work folder {work_dir}: the folder of node {node.fullname} "
                             f"leads out of it (to {folder}) through a symbolic link; "
                             "remove the link")
        problem = result_problem(node, work_dir)
        if problem is not None:
            node.overwrite = True
            rerun[node.fullname] = problem
            if say is not None:
                say(node, problem)
    return rerun
