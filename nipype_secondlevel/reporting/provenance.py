"""Provenance shown in the report: package versions, input files with SHA-256, and each
node's run time and cache status read from its nipype result file."""

import hashlib
import json
import pickle
import platform
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

#: Packages whose versions the provenance section lists (distribution names).
PACKAGES = ("nipype-secondlevel", "nipype", "nilearn", "nibabel", "numpy", "scipy",
            "pandas", "matplotlib", "networkx")


@dataclass
class NodeRun:
    """What one node's result file says about its last execution."""

    name: str
    status: str  # "ran", "cached" or "unknown"
    seconds: float = None
    started: str = None
    finished: str = None
    hostname: str = None
    inputs: dict = None


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions():
    """Versions of the packages in :data:`PACKAGES`, Python and the platform."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = sys.version.split()[0]
    versions["platform"] = platform.platform()
    return versions


def _epoch(iso):
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


def _plain_inputs(inputs):
    """Node inputs as JSON-friendly values, undefined ones left out."""
    from nipype.interfaces.base import isdefined

    plain = {}
    if isinstance(inputs, list):  # a MapNode's result: one inputs dict per item
        return {f"[{i}] {k}": v for i, item in enumerate(inputs)
                for k, v in _plain_inputs(item).items()}
    for key, value in sorted((inputs or {}).items()):
        if not isdefined(value):
            continue
        try:
            json.dumps(value)
            plain[key] = value
        except TypeError:
            plain[key] = str(value)
    return plain


def _times(runtime):
    """(started, finished, seconds, hostname) of a node's runtime record.

    A MapNode's record is a list, one per item: it started with the first
    item, finished with the last, and took the items' total time.
    """
    if not isinstance(runtime, list):
        return (getattr(runtime, "startTime", None), getattr(runtime, "endTime", None),
                getattr(runtime, "duration", None), getattr(runtime, "hostname", None))
    items = [_times(item) for item in runtime]
    starts = [t[0] for t in items if t[0]]
    ends = [t[1] for t in items if t[1]]
    seconds = [t[2] for t in items if t[2] is not None]
    return (min(starts, default=None), max(ends, default=None),
            sum(seconds) if seconds else None, next((t[3] for t in items if t[3]), None))


def node_runs(workflow_dir, node_folders, run_started=None):
    """Run time and cache status of nodes, read from their nipype result files.

    Parameters
    ----------
    workflow_dir : path
        Folder of the workflow the nodes belong to (``<work>/<workflow name>``).
    node_folders : dict
        Node full name -> its folder relative to ``workflow_dir``.
    run_started : float or None
        Epoch seconds at which the run that builds the report began. A node
        whose result was written before it came from the cache; None: unknown.
    """
    from nipype.utils.filemanip import loadpkl

    runs = []
    for name, folder in node_folders.items():
        folder = Path(workflow_dir, folder)
        result_file = folder / f"result_{folder.name}.pklz"
        if not result_file.exists():
            runs.append(NodeRun(name, "unknown"))
            continue
        try:
            result = loadpkl(result_file)
            runtime = result.runtime
        except (OSError, EOFError, AttributeError, ImportError, pickle.UnpicklingError):
            # unreadable, or written by another nipype version
            runs.append(NodeRun(name, "unknown"))
            continue
        started, finished, seconds, hostname = _times(runtime)
        end = _epoch(finished)
        if run_started is None or end is None:
            status = "unknown"
        else:
            status = "ran" if end >= run_started - 0.01 else "cached"
        runs.append(NodeRun(
            name, status, seconds=seconds, started=started, finished=finished,
            hostname=hostname, inputs=_plain_inputs(getattr(result, "inputs", None)),
        ))
    # In the order they ran; nodes with no result last.
    return sorted(runs, key=lambda r: (r.started is None, r.started or "", r.name))


def input_files(inputs_table):
    """Input maps listed in an inputs table (TSV or CSV), with size and SHA-256.

    Relative paths are read from the table's folder, as the analysis reads them.
    """
    from ..io.tables import absolute_paths, read_table

    table = read_table(inputs_table, "inputs table")
    path_columns = [c for c in table.columns if c == "path" or c.endswith("_path")]
    for column in path_columns:
        table[column] = absolute_paths(table[column], Path(inputs_table).parent)
    rows = []
    for record in table.to_dict("records"):
        for column in path_columns:
            path = Path(str(record[column]))
            exists = path.exists()
            rows.append({
                "subject": record.get("subject", ""),
                "condition": record.get("condition", ""),
                "file": str(path),
                "bytes": path.stat().st_size if exists else None,
                "SHA-256": sha256(path) if exists else "missing",
            })
    return pd.DataFrame(rows, columns=["subject", "condition", "file", "bytes", "SHA-256"])
