"""Reading inputs and writing outputs safely.

Outputs are written to a temporary name in their destination folder and then
renamed, so a reader never sees a half-written file.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of written files: what open() would give under the umask
#: (mkstemp alone gives 0600, unreadable by the rest of a lab).
FILE_MODE = 0o666 & ~_current_umask()


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the file's suffixes so that writers choosing a
    format by extension (``.nii.gz``, ``.png``) behave as for ``path``.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_img(img, path):
    """Save a NIfTI image atomically and return its absolute path as str."""
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return str(Path(path).absolute())


def save_tsv(frame, path, index=False):
    """Save a DataFrame as TSV atomically and return its absolute path as str."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=index)
    return str(Path(path).absolute())


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure as PNG atomically and return its path as str."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return str(Path(path).absolute())


def save_arrays(path, array=None, **arrays):
    """Save one array as .npy, or named arrays as .npz, atomically; return the path as str."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        if array is not None:
            np.save(handle, array)
        else:
            np.savez(handle, **arrays)
    return str(Path(path).absolute())


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return str(Path(dst).absolute())


def remove_stale_parts(folder, names):
    """Delete temporary files that :func:`atomic_path` left for ``names`` in ``folder``.

    A writer killed between creating its temporary file and renaming it (SIGKILL,
    power off) leaves ``.<name>.<random>.part<suffix>``; the next writer of the
    same names calls this. Only call it where no other process writes these names
    at the same time (a run holds its work folder's lock).
    """
    folder = Path(folder)
    removed = []
    for name in names:
        name = Path(name).name
        suffix = "".join(Path(name).suffixes)
        for stale in folder.glob(f".{name}.*.part{suffix}"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed
