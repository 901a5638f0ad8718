"""First-level analysis folders (FSL FEAT, SPM) as users give them: globbed, one per
subject, each subject's label read from the folders' names."""

import glob
import re
from pathlib import Path

from ..io.errors import bad_input

#: A BIDS subject folder name (``sub-01``), anywhere in a first-level folder's path.
_SUBJECT = re.compile(r"^(sub-[A-Za-z0-9]+)")


def expand_folders(patterns, what):
    """The folders named by ``patterns`` (paths or glob patterns, e.g. ``sub-*/*.feat``).

    Each pattern must match at least one folder; the folders are returned
    absolute, sorted and without repeats. ``what`` names them in errors
    ("FEAT folders").
    """
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    folders = []
    for pattern in map(str, patterns):
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        found = [Path(m).absolute() for m in matches if Path(m).is_dir()]
        if not found:
            raise bad_input(f"{what} {pattern}", "no folder matches")
        folders += [f for f in found if f not in folders]
    return sorted(folders)


def subject_labels(folders, suffix=""):
    """The subject of every folder: the ``sub-<label>`` component of its path when there
    is one, else the first path component that differs between the folders (the
    folder's own name for a single folder), without ``suffix`` (e.g. ``.feat``).

    >>> [str(s) for s in subject_labels([Path("/d/S01/stats"), Path("/d/S02/stats")])]
    ['S01', 'S02']
    """
    parts = [Path(f).parts for f in folders]
    bids = [next((m.group(1) for p in reversed(ps) if (m := _SUBJECT.match(p))), None)
            for ps in parts]
    if all(bids):
        return bids
    depth = 0
    while len({ps[depth] if depth < len(ps) else "" for ps in parts}) == 1 and \
            depth < max(len(ps) for ps in parts) - 1:
        depth += 1
    if len(parts) == 1:
        depth = len(parts[0]) - 1
    labels = [ps[min(depth, len(ps) - 1)] for ps in parts]
    return [label[:-len(suffix)] if suffix and label.endswith(suffix) else label
            for label in labels]


def find_image(folder, stem, extensions):
    """``folder/<stem><extension>`` for the first extension that exists, else None."""
    for extension in extensions:
        path = Path(folder) / f"{stem}{extension}"
        if path.is_file():
            return path
    return None


def check_one_folder_each(folders, labels, what, hint):
    """One-line error when two folders give one subject (``hint`` says what to do)."""
    seen = {}
    for folder, label in zip(folders, labels):
        if label in seen:
            raise bad_input(f"{what} {seen[label]} and {folder}",
                            f"both give subject {label}; {hint}")
        seen[label] = folder
