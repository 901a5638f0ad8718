"""A damaged cache heals on the next run.

Nipype takes a node from the cache when the hash file in its folder
(``_0x<hash>.json``) matches its inputs; it does not look at the files the node
wrote. A result file cut short or deleted, an output file deleted (a scratch
purge) or changed after the node finished (a truncated or rewritten
``masked_data.npy``) would then be trusted on every rerun, or fail in a node that
did nothing wrong.

:func:`repair_cache`, run before the workflow, checks every finished node of the
work folder: its result file loads, and every file of the work folder its outputs
name exists and is not newer than the result file (outputs are written before
it). A node failing the check loses its result and hash files, so nipype runs it
again; the files it rewrites are newer, which changes the inputs' hashes of the
nodes that read them, so nipype runs those again too.
"""

import re
from pathlib import Path

#: A finished node's hash file (an unfinished one ends in ``_unfinished.json``).
_HASH_FILE = re.compile(r"^_0x[0-9a-f]+\.json$")


def load_node_result(path):
    """A node's result file, as nipype reads it (relative paths resolved)."""
    from nipype.pipeline.engine.utils import load_resultfile

    return load_resultfile(str(path))


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


def result_problem(node_dir, work_dir):
    """Why the cached result in ``node_dir`` cannot be trusted, or None."""
    results = sorted(node_dir.glob("result_*.pklz"))
    if not results:
        return "its result file is missing"
    result_file = results[0]
    try:
        result = load_node_result(result_file)
    except Exception as err:  # noqa: BLE001 - cut short, garbled: any unpickling error
        return f"its result file cannot be read ({type(err).__name__})"
    outputs = getattr(result, "outputs", None)
    if outputs is None:
        return "its result has no outputs"
    finished = result_file.stat().st_mtime_ns
    # A TraitedSpec, or a Bunch (MapNodes, function nodes)
    values = outputs.trait_get() if hasattr(outputs, "trait_get") else dict(vars(outputs))
    for path in _paths(values):
        if not path.is_relative_to(work_dir):
            continue  # the user's files and the results folder: not the cache's
        if not path.exists():
            return f"{path.name} is missing"
        if path.is_file() and path.stat().st_mtime_ns > finished:
            return f"{path.name} changed after the node finished"
    return None


def forget(node_dir):
    """Remove a node's result and hash files: nipype runs it again."""
    for path in [*node_dir.glob("result_*.pklz"), *node_dir.glob("_0x*.json")]:
        path.unlink(missing_ok=True)


def repair_cache(folder, work_dir):
    """Check every finished node under ``folder`` (a workflow's folder in ``work_dir``);
    forget those whose result cannot be trusted (and the MapNode holding an item
    that is). Returns {node folder: reason} of the nodes forgotten."""
    folder, work_dir = Path(folder), Path(work_dir).absolute()
    if not folder.is_dir():
        return {}
    forgotten = {}
    node_dirs = {p.parent for p in folder.rglob("_0x*.json") if _HASH_FILE.match(p.name)}
    for node_dir in sorted(node_dirs):
        problem = result_problem(node_dir, work_dir)
        if problem is None:
            continue
        forgotten[node_dir] = problem
        forget(node_dir)
        if node_dir.parent.name == "mapflow":  # an item of a MapNode
            forget(node_dir.parent.parent)
            forgotten.setdefault(node_dir.parent.parent, f"its item {node_dir.name} {problem}")
    return forgotten
