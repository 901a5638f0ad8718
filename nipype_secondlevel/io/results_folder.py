"""The results folder holds what the last run exported, and nothing of a user's is lost.

Every export writes a manifest, ``.nipype-secondlevel-results.json``, giving each file
it wrote and its sha256. A file is ours only while the manifest (a regular file of this
user, never a link) lists it with the checksum it still has: nothing else in the
folder (a user's file, a file of ours that was changed since, a symbolic link, a
folder) is ever removed or overwritten, and neither are the run's inputs, wherever
they lie (``run --inputs res/inputs.tsv --out-dir res`` reads the table a run wrote).

An export (:func:`export_results`) copies the results into a staging folder inside
the results folder first; only when every copy is whole are they renamed into place,
then the previous export's files that this run did not write are removed, then the
manifest is rewritten. A run that fails before or during the copies leaves the
previous results whole. While files are renamed in, the manifest lists the old and
the new checksums, so a run killed at any moment leaves every file of ours provable,
and the next export removes what it does not write, and the killed export's staging
folder (a folder only this user can write in, marked as ours).

Before a run, :func:`check_results_folder` refuses a folder holding anything that is
not ours (or, asked to, keeps it untouched and says so in one line).
"""

import os
import stat
import warnings
from pathlib import Path
from typing import NamedTuple

from .errors import InputWarning, bad_input
from .files import copy_file, regular_file_sha256, write_json
from .private import private_folder, remove_private_folder

MANIFEST = ".nipype-secondlevel-results.json"
#: The results folder's lock (written by :mod:`nipype_secondlevel.runtime`): not a
#: result, never foreign, never removed here.
LOCK = ".nipype-secondlevel.lock"
#: Staging folders of :func:`export_results`: ``.nipype-secondlevel-staging.<random>``.
STAGING_PREFIX = ".nipype-secondlevel-staging."
#: The next manifest, written in the staging folder and renamed into place.
_NEXT_MANIFEST = ".next-manifest.json"


def _plain_name(name):
    """True for a file name of the folder itself (no path, no '.', '..', NUL)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\0" not in name)


def _load_manifest(folder, where=None):
    """The manifest of ``folder`` as {name: set of sha256}, {} without one.

    Raises a one-line error (about ``where``, by default the folder) when there is a
    manifest that is not one this user's exports wrote: a link or not a regular file,
    another user's, or not our JSON.
    """
    import json

    path = Path(folder) / MANIFEST
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {}
    where = where or f"results folder {folder}"
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise bad_input(where, f"its manifest {MANIFEST} is {kind}: nothing it lists is "
                        "removed or replaced; remove it or choose another folder")
    if info.st_uid != os.geteuid():
        raise bad_input(where, f"its manifest {MANIFEST} belongs to another user (uid "
                        f"{info.st_uid}): their results are not replaced; choose another "
                        "folder")
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
        if data.get("generated_by") != "nipype-secondlevel":
            raise ValueError("not ours")
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise bad_input(where, f"its manifest {MANIFEST} is not one nipype-secondlevel "
                        "wrote: nothing it lists is removed or replaced; remove it or "
                        "choose another folder") from err
    if isinstance(files, list):  # an older manifest: names without checksums, none proven
        return {}
    return {name: {c for c in sums if isinstance(c, str)} for name, sums in files.items()
            if _plain_name(name) and isinstance(sums, list)}


def _write_manifest(folder, files, staging):
    """Write ``files`` ({name: checksums}) as the manifest of ``folder``, renamed into
    place from ``staging`` (the same filesystem, never a temporary file in the folder)."""
    written = write_json(Path(staging) / _NEXT_MANIFEST, {
        "generated_by": "nipype-secondlevel",
        "files": {name: sorted(sums) for name, sums in sorted(files.items())}}, indent=1)
    os.replace(written, Path(folder) / MANIFEST)


def read_manifest(folder):
    """Names of the files the last export into ``folder`` wrote ([] without a manifest)."""
    try:
        return sorted(_load_manifest(folder))
    except ValueError:
        return []


class Survey(NamedTuple):
    """What a results folder holds (:func:`survey_folder`)."""

    ours: dict  # name -> sha256 of each regular file the manifest proves ours
    inputs: dict  # name -> sha256 (None: not a regular file) of the run's inputs there
    foreign: list  # every other entry (sorted names), never touched
    leftovers: list  # staging folders of killed exports (:func:`_proven_staging`)


def _input_ids(inputs):
    """(device, inode) of every input file that exists (links followed)."""
    ids = set()
    for path in inputs:
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            continue
        ids.add((info.st_dev, info.st_ino))
    return ids


def survey_folder(folder, inputs=(), where=None):
    """Sort the entries of ``folder``: ours, the run's inputs, leftovers, foreign.

    ``inputs`` are the run's input files (table, maps, mask, design file...): an
    entry that is one of them (the same file, by device and inode: a hard link or a
    path through a link included), or the JSON sidecar of one, is an input. The
    manifest and the lock are none of these. A manifest this user's exports did not
    write is a one-line error about ``where`` (by default the folder).
    """
    from .sidecars import sidecar_path

    folder = Path(folder)
    listed = _load_manifest(folder, where)
    ids = _input_ids(inputs)
    entries = {}
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.name not in (MANIFEST, LOCK):
                entries[entry.name] = entry.stat(follow_symlinks=False)
    input_names = {name for name, info in entries.items()
                   if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) in ids}
    input_names |= {sidecar_path(name).name for name in input_names} & set(entries)
    inputs_found = {name: regular_file_sha256(folder / name) for name in input_names}
    ours, foreign, leftovers = {}, [], []
    for name, info in sorted(entries.items()):
        if name in input_names:
            if inputs_found[name] in listed.get(name, ()):
                ours[name] = inputs_found[name]
            continue
        if name.startswith(STAGING_PREFIX) and _proven_staging(folder / name, info):
            leftovers.append(name)
            continue
        checksum = regular_file_sha256(folder / name) if name in listed else None
        if checksum is not None and checksum in listed[name]:
            ours[name] = checksum
        else:
            foreign.append(name)
    return Survey(ours, inputs_found, foreign, leftovers)


def _proven_staging(path, info):
    """True for a staging folder of ours: this user's, a real folder (not a link) that
    no one else may write in (0700, as :func:`.private.private_folder` made it), holding
    our marker."""
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() \
            or info.st_mode & 0o077:
        return False
    try:
        marker = os.lstat(path / MANIFEST)
    except OSError:
        return False
    return stat.S_ISREG(marker.st_mode) and marker.st_uid == os.geteuid()


def _remove_proven(path, checksums):
    """Delete ``path`` if it is a regular file (not a link) with one of ``checksums``."""
    if regular_file_sha256(path) in checksums:
        os.unlink(path)  # unlink never follows a link
        return True
    return False


def _new_staging(folder):
    """A new staging folder in ``folder`` (0700) with its marker (:func:`_proven_staging`).

    Only this process writes in it, so everything it holds is ours: the staged
    results, and a killed export's partial copy, removed with it by the next export."""
    staging = private_folder(folder, STAGING_PREFIX)
    write_json(staging / MANIFEST, {"generated_by": "nipype-secondlevel", "files": {}})
    return staging


def _summary(names):
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def export_results(folder, pairs, inputs=()):
    """Export ``pairs`` of (source file, name) into ``folder``, replacing the previous
    export; returns the exported paths (str, in ``pairs`` order).

    The previous export's files that this one does not write are removed if they are
    still as it wrote them; nothing else is (see the module's docstring). A result
    whose name is taken by a foreign entry, or by an input of the run with other
    content, is a one-line error before anything in ``folder`` changes.

    Parameters
    ----------
    folder : path
        The results folder (created if missing).
    pairs : list of (path, str)
        Each result and its name in the folder (a plain file name).
    inputs : list of paths
        The run's input files: never removed nor replaced, wherever they lie.
    """
    folder = Path(folder)
    names = [name for _, name in pairs]
    if not all(_plain_name(n) for n in names):
        raise ValueError(f"result names must be plain file names, got {names}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two results share the name {twice[0]}")
    folder.mkdir(parents=True, exist_ok=True)
    before = survey_folder(folder, inputs)
    for leftover in before.leftovers:
        remove_private_folder(folder / leftover)
    staging = _new_staging(folder)
    try:
        staged = {name: regular_file_sha256(copy_file(source, staging / name))
                  for source, name in pairs}
        _check_collisions(folder, staged, before)
        listed = {name: {checksum} for name, checksum in before.ours.items()}
        for name, checksum in staged.items():
            listed.setdefault(name, set()).add(checksum)
        _write_manifest(folder, listed, staging)  # old and new: every state provable
        for name in names:
            if name not in before.inputs:  # an input with this very content stays
                os.replace(staging / name, folder / name)
        for name, checksum in before.ours.items():
            if name not in staged and name not in before.inputs:
                _remove_proven(folder / name, {checksum})
        final = {name: {checksum} for name, checksum in staged.items()}
        final.update({name: {checksum} for name, checksum in before.ours.items()
                      if name in before.inputs and name not in staged})
        _write_manifest(folder, final, staging)
    finally:
        remove_private_folder(staging)
    return [str((folder / name).absolute()) for name in names]


def _check_collisions(folder, staged, before):
    """One-line error if a result would replace an input (with other content) or an
    entry that is not ours."""
    where = f"results folder {folder}"
    for name, checksum in staged.items():
        if name in before.inputs and before.inputs[name] != checksum:
            raise bad_input(where, f"this run's {name} would replace {folder / name}, an "
                            "input of the run: nothing was moved in (the previous results "
                            "are whole); give that input from outside the results folder")
        if name in before.foreign:
            raise bad_input(where, f"holds a {name} that nipype-secondlevel did not write "
                            "(or that changed since): this run's results were not moved in "
                            "(the previous results are whole); move it away and run again")


def check_results_folder(out_dir, work_dir=None, replace=False, inputs=(),
                         option="--out-dir", keep_option="--replace-results", subfolders=()):
    """Refuse, before a run, a results folder that cannot take this run's results.

    Refused: a path that exists and is not a folder; a folder this process cannot
    write in; a work folder equal to it or inside it; a manifest this user's exports
    did not write; a folder holding entries that are not ours (:func:`survey_folder`:
    a user's files, files of ours changed since, links, folders), unless ``replace``:
    they are then kept untouched, with one warning line. ``keep_option`` is the option
    that asks for this (None where there is none). ``inputs`` lying in the folder are
    never foreign. ``subfolders``: names of folders in it that hold results of their own
    (several analyses): each is checked as a results folder; a link or a file in the
    place of one is refused (even with ``replace``: the results would go through it).
    """
    out = Path(out_dir).absolute()
    if work_dir is not None:
        check_work_outside(out, work_dir)
    check_writable_folder(out, option)
    if not out.is_dir():
        return
    foreign = survey_folder(out, inputs, where=f"{option} {out_dir}").foreign
    for name in subfolders:  # where results go: never a link, nor a file in the way
        entry = out / name
        if entry.is_symlink() or entry.exists() and not entry.is_dir():
            kind = "a symbolic link" if entry.is_symlink() else "not a folder"
            raise bad_input(f"{option} {out_dir}", f"its {name} is {kind}, where the results "
                            f"of the analysis {name} go: move it away")
        if entry.is_dir():
            foreign = [f for f in foreign if f != name]
            check_results_folder(entry, None, replace, inputs, option, keep_option)
    if not foreign:
        return
    what = (f"{len(foreign)} file(s) or folder(s) that nipype-secondlevel did not write "
            f"or that changed since it wrote them ({_summary(foreign)})")
    if replace and keep_option:
        warnings.warn(f"{option} {out_dir}: {what} are kept untouched beside the results",
                      InputWarning, stacklevel=2)
        return
    hint = f", or add {keep_option} to keep them untouched beside the results" \
        if keep_option else ""
    raise bad_input(f"{option} {out_dir}", f"holds {what}, which it never removes; choose "
                    f"another folder{hint}")


def check_work_outside(out_dir, work_dir):
    """Refuse a work folder that is the results folder or inside it."""
    out, work = Path(out_dir).absolute(), Path(work_dir).absolute()
    real_out, real_work = Path(os.path.realpath(out)), Path(os.path.realpath(work))
    if real_work == real_out or real_out in real_work.parents:
        where = ("is the results folder" if real_work == real_out
                 else "is inside the results folder")
        raise bad_input(f"--work-dir {work_dir}", f"{where} {out}, which holds the "
                        "results only: choose a work folder outside it")


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
        probe = private_folder(existing, ".nipype-secondlevel-probe.")
    except OSError as err:
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise bad_input(f"{option} {path}", f"cannot be written{where}: "
                        f"{err.strerror or err}") from err
    remove_private_folder(probe)
