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


# --- Masked data: one (n_maps, n_voxels) float32 .npy, read in voxel chunks -----------

#: Voxels per block of a chunked computation. Chunks are whole blocks starting at
#: multiples of this, so the arithmetic (and so every bit of the results) does not
#: depend on the memory budget: only how many blocks are held at once does.
VOXEL_BLOCK = 4096


def write_masked_data(paths, mask, affine, path, dtype=np.float32):
    """Write the maps' in-mask values as one (n_maps, n_voxels) ``.npy``, atomically.

    Maps are read one at a time and each row is appended to the file, so memory
    holds one map, whatever the number of maps. The file is uncompressed and C
    ordered, so that :func:`read_voxel_chunk` can memory-map it. Returns the
    absolute path as str.
    """
    mask = np.asarray(mask, dtype=bool)
    dtype = np.dtype(dtype)
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (len(paths), int(mask.sum())),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for map_path in paths:
            img = load_img(map_path, "input map")
            check_same_grid(img, mask.shape, affine, map_path)
            volume = np.asanyarray(img.dataobj)
            if volume.ndim == 4:
                volume = volume[..., 0]
            out.write(np.ascontiguousarray(volume[mask], dtype=dtype).tobytes())
            del img, volume
    return str(Path(path).absolute())


def _npy_layout(handle):
    """(shape, dtype, data offset) of an open C-ordered .npy file."""
    version = np.lib.format.read_magic(handle)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran_order, dtype = read_header(handle)
    if fortran_order or len(shape) != 2:
        raise ValueError("expected a C-ordered (n_maps, n_voxels) array")
    return tuple(shape), dtype, handle.tell()


def masked_data_shape(path):
    """(n_maps, n_voxels) of a masked data file, reading only its header."""
    with open(path, "rb") as handle:
        return _npy_layout(handle)[0]


def voxel_chunk_size(n_maps, mem_gb, n_voxels=None, bytes_per_value=24):
    """Voxels per chunk so that a chunk's arrays take at most half of ``mem_gb``.

    A chunk costs about ``bytes_per_value`` bytes per (map, voxel): the float32
    rows read from the file, their float64 copy and the fit's temporaries. The
    result is a whole number of :data:`VOXEL_BLOCK` blocks (at least one) and no
    more than the blocks covering ``n_voxels``.
    """
    budget = float(mem_gb) * 2**30 / 2
    blocks = int(budget // (max(int(n_maps), 1) * bytes_per_value * VOXEL_BLOCK))
    blocks = max(blocks, 1)
    if n_voxels is not None:
        blocks = min(blocks, max(-(-int(n_voxels) // VOXEL_BLOCK), 1))
    return blocks * VOXEL_BLOCK


def read_voxel_chunk(path, start, stop, dtype=float):
    """Columns ``start:stop`` of a masked data file as an in-memory array.

    Reads each row's segment with plain file reads rather than through a memory
    map: the pages of a map count in the process's resident memory (readahead
    maps far more than the chunk), plain reads leave them in the page cache
    only. Memory is the returned array. ``np.load(path, mmap_mode="r")`` gives
    the same values, for random access.
    """
    with open(path, "rb", buffering=0) as handle:
        (n_maps, n_voxels), file_dtype, offset = _npy_layout(handle)
        start, stop = max(int(start), 0), min(int(stop), n_voxels)
        width = max(stop - start, 0)
        chunk = np.empty((n_maps, width), dtype=dtype)
        row = np.empty(width, dtype=file_dtype)
        nbytes = width * file_dtype.itemsize
        for i in range(n_maps):
            handle.seek(offset + (i * n_voxels + start) * file_dtype.itemsize)
            if handle.readinto(memoryview(row).cast("B")) != nbytes:
                raise ValueError(f"masked data file {path} is truncated")
            chunk[i] = row
    return chunk


def iter_voxel_chunks(path, chunk_size, dtype=float):
    """Yield (slice, array) over the voxel columns of a masked data file."""
    n_voxels = masked_data_shape(path)[1]
    chunk_size = max(int(chunk_size), 1)
    for start in range(0, n_voxels, chunk_size):
        stop = min(start + chunk_size, n_voxels)
        yield slice(start, stop), read_voxel_chunk(path, start, stop, dtype)
