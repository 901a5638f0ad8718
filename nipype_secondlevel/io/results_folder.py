"""The results folder holds exactly what the last run exported, and nothing of a user's.

Every export writes a manifest, ``.nipype-secondlevel-results.json``, listing the files
it wrote. The next export into the folder removes the files of the previous manifest that
it does not write itself, so no result of an earlier run (another contrast, another
correction) stays beside this run's. Only files a manifest lists are ever removed; a
folder holding anything else is refused before the run starts (:func:`check_results_folder`),
unless the user asks for its content to be replaced.

The manifest lists the union of the previous and the new files while the export is under
way, so a run killed at any moment leaves every file of ours listed, and the next run
removes what it does not write.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import bad_input
from .files import atomic_path

MANIFEST = ".nipype-secondlevel-results.json"


def read_manifest(folder):
    """Names of the files the last export into ``folder`` wrote ([] without a manifest)."""
    path = Path(folder) / MANIFEST
    try:
        return list(json.loads(path.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_manifest(folder, names):
    """Write the manifest of ``folder``, atomically."""
    with atomic_path(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"generated_by": "nipype-secondlevel",
                                   "files": sorted(set(names))}, indent=1) + "\n")


#: The temporary files of :func:`~nipype_secondlevel.io.files.atomic_path`:
#: ``.<name>.<8 random characters>.part<suffixes>``.
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part(\.[^.]+)*$")


def _is_temporary(name):
    return TEMPORARY.match(name) is not None


def foreign_entries(folder):
    """Entries of ``folder`` that no export of ours wrote (sorted names)."""
    ours = set(read_manifest(folder)) | {MANIFEST}
    return sorted(entry.name for entry in Path(folder).iterdir()
                  if entry.name not in ours and not _is_temporary(entry.name))


def start_export(folder, names):
    """Before copying ``names`` into ``folder``: list them with the previous ones."""
    write_manifest(folder, [*read_manifest(folder), *names])


def finish_export(folder, names):
    """After copying ``names``: remove the previous export's other files; list ``names``.

    Returns the names removed.
    """
    folder = Path(folder)
    keep = set(names)
    removed = []
    for name in read_manifest(folder):
        if name in keep or "/" in name or name in ("", ".", ".."):
            continue
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    write_manifest(folder, names)
    return removed


def check_results_folder(out_dir, work_dir, replace=False, option="--out-dir"):
    """Refuse, before a run, a results folder that cannot hold exactly this run's results.

    Refused: a path that exists and is not a folder; a folder this process cannot
    write in; a work folder equal to it or inside it; a folder holding entries that
    no export of ours wrote, unless ``replace``. Returns those entries (to delete
    with :func:`remove_entries` once every other check has passed).
    """
    out, work = Path(out_dir).absolute(), Path(work_dir).absolute()
    real_out, real_work = Path(os.path.realpath(out)), Path(os.path.realpath(work))
    if real_work == real_out or real_out in real_work.parents:
        where = "is the results folder" if real_work == real_out else "is inside the results folder"
        raise bad_input(f"--work-dir {work_dir}", f"{where} {out}, which holds the results "
                        "only: choose a work folder outside it")
    check_writable_folder(out, option)
    if not out.is_dir():
        return []
    foreign = foreign_entries(out)
    if foreign and not replace:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise bad_input(f"{option} {out_dir}", f"holds {len(foreign)} file(s) or folder(s) "
                        f"that nipype-secondlevel did not write ({shown}); choose another "
                        "folder, or add --replace-results to delete them")
    return foreign


def remove_entries(folder, names):
    """Delete the entries ``names`` (files or folders) of ``folder``."""
    for name in names:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def check_writable_folder(path, option):
    """Refuse a folder (existing or to be created) this process cannot write in."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise bad_input(f"{option} {path}", "exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise bad_input(f"{option} {path}", f"cannot be created: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".nipype-secondlevel-probe.", dir=existing)
    except OSError as err:
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise bad_input(f"{option} {path}", f"cannot be written{where}: "
                        f"{err.strerror or err}") from err
    os.close(fd)
    os.unlink(probe)
