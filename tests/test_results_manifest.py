"""Property test of the results folder's export: whatever a folder holds (a user's
files, files of an earlier export, some changed since, links, folders, the run's
inputs) and whatever an export writes, nothing but the earlier export's unchanged files
is ever removed or replaced."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.io.results_folder import MANIFEST, export_results

NAMES = ["a.nii.gz", "b.tsv", "c.json", "d.png", "e", "f.txt"]
#: What an entry of the folder is before the export.
KINDS = ["foreign", "own", "modified", "link", "folder", "own input", "foreign input"]


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder):
    """Every entry: ('link', target), ('folder', {...}) or ('file', sha256)."""
    shot = {}
    for entry in sorted(Path(folder).iterdir()):
        if entry.is_symlink():
            shot[entry.name] = ("link", os.readlink(entry))
        elif entry.is_dir():
            shot[entry.name] = ("folder", snapshot(entry))
        else:
            shot[entry.name] = ("file", digest(entry))
    return shot


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(KINDS), max_size=6),
       written=st.lists(st.sampled_from(NAMES), unique=True, max_size=6),
       same=st.booleans())
def test_only_unchanged_files_of_an_earlier_export_are_ever_removed(before, written, same):
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        out, sources, outside = base / "out", base / "sources", base / "outside"
        for folder in (out, sources, outside):
            folder.mkdir()

        def source(name, text):
            path = sources / f"{len(list(sources.iterdir()))}_{name}"
            path.write_text(text)
            return str(path)

        # An earlier export wrote the "own" entries (inputs of the next run or not).
        own = [n for n, kind in before.items() if kind in ("own", "modified", "own input")]
        export_results(out, [(source(n, f"old {n}"), n) for n in own])
        inputs = []
        for name, kind in before.items():
            path = out / name
            if kind == "modified":
                path.write_text(f"changed {name}")
            elif kind == "foreign":
                path.write_text(f"user's {name}")
            elif kind == "foreign input":
                path.write_text(f"user's input {name}")
            elif kind == "link":
                (outside / name).write_text(f"victim {name}")
                path.symlink_to(outside / name)
            elif kind == "folder":
                path.mkdir()
                (path / "inside").write_text("user's")
            if kind.endswith("input"):
                inputs.append(str(path))
        # The new export: the old content where ``same`` (an input rewritten as it is).
        pairs = [(source(n, f"old {n}" if same else f"new {n}"), n) for n in written]
        first = snapshot(out)
        outside_before = snapshot(outside)
        try:
            export_results(out, pairs, inputs=inputs)
            failed = False
        except InputError:
            failed = True
        now = snapshot(out)
        assert snapshot(outside) == outside_before
        if failed:  # a collision: nothing in the folder changed
            assert now == first
            return
        untouchable = [n for n, kind in before.items() if kind != "own"]
        assert {n: now[n] for n in untouchable} == {n: first[n] for n in untouchable}
        for name in written:
            assert name in now and now[name][0] == "file"
            assert Path(out / name).read_text() == (f"old {name}" if same else f"new {name}")
        removed = sorted(set(first) - set(now))
        assert removed == sorted(n for n, kind in before.items()
                                 if kind == "own" and n not in written)
        listed = json.loads((out / MANIFEST).read_text())["files"]
        kept_inputs = [n for n, kind in before.items() if kind == "own input"]
        assert sorted(listed) == sorted({*written, *kept_inputs})
        assert not [n for n in now if n.startswith(".nipype-secondlevel-staging")]
