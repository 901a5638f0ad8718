"""Reading inputs and writing outputs safely.

Outputs are written in a private temporary folder beside their destination and then
renamed, so a reader never sees a half-written file, and no write ever follows a
symbolic link: the temporary folder is new and ours alone (mode 0700), and a rename
replaces a link at the destination instead of writing through it.
"""

import hashlib
import io
import json
import math
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from .images import fast_gzip
from .private import private_folder, remove_private_folder


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of written files: what open() would give under the umask
#: (mkstemp alone gives 0600, unreadable by the rest of a lab).
FILE_MODE = 0o666 & ~_current_umask()

#: Suffix of the private folders :func:`atomic_path` writes in (``.<name>.<random>.part``).
PART_SUFFIX = ".part"


@contextmanager
def atomic_path(path):
    """Yield a temporary path for ``path``; rename it to ``path`` on success.

    The temporary file has the name of ``path`` (so writers choosing a format by
    extension, ``.nii.gz`` or ``.png``, behave as for ``path``) inside a new private
    folder ``.<name>.<random>.part`` beside it, which is removed in every case. A
    symbolic link at ``path`` is replaced, never written through.
    """
    path = Path(path)
    scratch = private_folder(path.parent, f".{path.name}.", PART_SUFFIX)
    try:
        tmp = scratch / path.name
        yield tmp
        os.chmod(tmp, FILE_MODE, follow_symlinks=False)
        os.replace(tmp, path)
    finally:
        remove_private_folder(scratch)  # our own new folder: never a link


def _strict(value, where="JSON"):
    """``value`` with every float checked finite (ValueError naming the key if not)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: not a number JSON can hold")
    if isinstance(value, dict):
        return {k: _strict(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def write_json(path, data, indent=2):
    """Write ``data`` as strict JSON (no NaN or Infinity: a non-finite number is a
    ValueError naming its key), atomically; return the absolute path as str.

    Every JSON file of the package (sidecars, ``dataset_description.json``, the
    results folder's manifest) is written here.
    """
    text = json.dumps(_strict(data, Path(path).name), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return str(Path(path).absolute())


#: zlib level of the ``.nii.gz`` files written: zlib-ng's level 2 writes the demo's maps
#: 1.9x faster than nibabel's (zlib, level 1), in 2% fewer bytes.
GZIP_LEVEL = 2


def save_img(img, path):
    """Save a NIfTI image atomically and return its absolute path as str.

    A ``.nii.gz`` is compressed by zlib-ng (:data:`GZIP_LEVEL`), its gzip header as
    nibabel's (dated 0, no name), so the same image gives the same bytes; the image
    keeps its files (nibabel's writer points them at the stream, closed after)."""
    with atomic_path(path) as tmp:
        if tmp.name.endswith(".nii.gz"):
            files = img.file_map
            try:
                with (open(tmp, "wb") as raw,
                      fast_gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0) as stream):
                    img.to_stream(stream)
            finally:
                img.file_map = files
        else:
            nib.save(img, tmp)
    return str(Path(path).absolute())


def save_tsv(frame, path, index=False):
    """Save a DataFrame as TSV atomically and return its absolute path as str."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=index)
    return str(Path(path).absolute())


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure as PNG atomically and return its path as str.

    Drawn in memory, then written: a full disk is an OSError naming the file (matplotlib's
    PNG writer turns it into an AttributeError of its own)."""
    picture = io.BytesIO()
    fig.savefig(picture, dpi=dpi, format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(picture.getvalue())
    return str(Path(path).absolute())


def save_arrays(path, array=None, **arrays):
    """Save one array as .npy, or named arrays as .npz, atomically; return the path as str."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        if array is not None:
            np.save(handle, array)
        else:
            np.savez(handle, **arrays)
    return str(Path(path).absolute())


def open_no_follow(path, flags=os.O_RDONLY, mode=0o666):
    """``os.open`` that refuses a symbolic link as the last component (``O_NOFOLLOW``)."""
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` atomically; return the absolute destination as str."""
    with atomic_path(dst) as tmp, open(src, "rb") as source, \
            os.fdopen(open_no_follow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return str(Path(dst).absolute())


def regular_file_sha256(path):
    """sha256 (hex) of ``path`` if it is a regular file, not a link; None otherwise.

    Opened without following a final link, and checked to be the regular file
    ``lstat`` saw (a FIFO or a device is never read).
    """
    try:
        before = os.lstat(path)
        if not stat.S_ISREG(before.st_mode):
            return None
        fd = open_no_follow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
