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
import pandas as pd

from .errors import bad_input


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


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return str(Path(dst).absolute())


def load_img(path, what="image"):
    """Load a NIfTI image, with a one-line error naming the file if it cannot."""
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    try:
        img = nib.load(path)
        # Touch the header and the data proxy now so truncated files fail here.
        img.header.get_data_shape()
    except Exception as err:  # nibabel raises many types for bad files
        raise bad_input(
            f"{what} {path}", f"not a readable NIfTI image ({err})"
        ) from err
    return img


def load_mask(path):
    """Load a mask image as (boolean array, image)."""
    img = load_img(path, "mask")
    data = np.asanyarray(img.dataobj)
    if data.ndim != 3:
        raise bad_input(f"mask {path}", f"expected a 3D image, got shape {data.shape}")
    return data.astype(bool), img


def load_masked_data(paths, mask, affine=None, dtype=np.float32):
    """Read maps into one (n_maps, n_voxels) array, one map at a time.

    Only the output array and one map are held in memory, never a 4D copy of
    all maps. Every map must be on the mask's grid.
    """
    mask = np.asarray(mask, dtype=bool)
    data = np.empty((len(paths), int(mask.sum())), dtype=dtype)
    for row, path in enumerate(paths):
        img = load_img(path, "input map")
        check_same_grid(img, mask.shape, affine, path)
        volume = np.asanyarray(img.dataobj)
        if volume.ndim == 4 and volume.shape[3] == 1:
            volume = volume[..., 0]
        data[row] = volume[mask]
    return data


def check_same_grid(img, shape, affine, path):
    """Raise a one-line error if ``img`` is not on the (shape, affine) grid."""
    img_shape = tuple(img.shape[:3])
    if len(img.shape) > 3 and any(d != 1 for d in img.shape[3:]):
        raise bad_input(
            f"input map {path}", f"expected a 3D map, got shape {tuple(img.shape)}"
        )
    if img_shape != tuple(shape) or (
        affine is not None and not np.allclose(img.affine, affine, atol=1e-3)
    ):
        raise bad_input(
            f"input map {path}",
            f"grid {img_shape} differs from the analysis grid {tuple(shape)}",
        )


def unmask(values, mask, affine, fill=0.0, dtype=np.float32):
    """Put voxel values (n_voxels,) or (k, n_voxels) back into an image."""
    values = np.asarray(values)
    if values.ndim == 1:
        volume = np.full(mask.shape, fill, dtype=dtype)
        volume[mask] = values
    else:
        volume = np.full(mask.shape + (values.shape[0],), fill, dtype=dtype)
        volume[mask] = values.T
    return nib.Nifti1Image(volume, affine)


def read_table(path, what="table"):
    """Read a TSV (or CSV) table, with a one-line error naming it if it cannot."""
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        return pd.read_csv(path, sep=sep)
    except Exception as err:
        raise bad_input(f"{what} {path}", f"cannot be read as a table ({err})") from err
