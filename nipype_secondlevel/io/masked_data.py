"""The masked data file: every input map's in-mask values as one (n_maps, n_voxels)
.npy, written once and read in voxel chunks."""

import os
import shutil
from pathlib import Path

import numpy as np

from ..spec import VOXEL_BLOCK  # chunks are whole blocks of it: see spec
from .errors import bad_input
from .files import atomic_path
from .images import check_same_grid, load_img, read_data
from .progress import Progress

#: Maps per read block. The maps are read in blocks of this many consecutive rows,
#: one job each (a MapNode that MultiProc or SLURM runs in parallel), then stacked
#: into the masked data file (:func:`stack_masked_data`). A fixed size rather than
#: one block per process: the workflow does not know the plugin, blocks before a
#: change (maps appended to the table) keep their rows and their cache, and small
#: blocks balance any number of processes. At about 0.05 s per 2 mm map a block is
#: a few seconds of reading, against a fraction of a second of scheduling per job.
MAPS_PER_READ_BLOCK = 64


def split_into_blocks(items, size):
    """``items`` as consecutive lists of ``size`` (the last one shorter).

    Self-contained (no module names), so that it can serve as a Nipype
    connection function.
    """
    items = list(items)
    return [items[start:start + size] for start in range(0, len(items), size)]


def write_masked_data(paths, mask, affine, path, dtype=np.float32, positive=False):
    """Write the maps' in-mask values as one (n_maps, n_voxels) ``.npy``, atomically.

    Maps are read one at a time and each row is appended to the file, so memory
    holds one map, whatever the number of maps. The file is uncompressed and C
    ordered, so that :func:`read_voxel_chunk` can memory-map it. Returns the
    absolute path as str.

    No in-mask value may be infinite (the analysis mask leaves out voxels
    that are, see :class:`~nipype_secondlevel.interfaces.GroupMask`; NaN marks a
    missing value), and
    with ``positive`` (first-level variance maps) above 0: otherwise a
    one-line error names the map, the number of voxels and the first one.
    """
    mask = np.asarray(mask, dtype=bool)
    dtype = np.dtype(dtype)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        _write_header(out, (len(paths), int(mask.sum())), dtype)
        for map_path in Progress("masked data").track(paths, len(paths), "maps"):
            img = load_img(map_path, "input map")
            check_same_grid(img, mask.shape, affine, map_path)
            volume = read_data(img, map_path, "input map")
            if volume.ndim == 4:
                volume = volume[..., 0]
            values = volume[mask]
            _check_values(values, mask, affine, map_path, positive)
            out.write(np.ascontiguousarray(values, dtype=dtype).tobytes())
            del img, volume
    return str(Path(path).absolute())


def start_map_rows(out, paths, shape):
    """Begin a map rows file (open ``out``): the maps' paths and grid shape; each map then
    follows as :func:`add_map_row` writes it. The mask's pass over the maps writes one per
    block, so that the masked data are taken from it once the mask is known
    (:func:`write_masked_data_from_rows`), the maps not read again."""
    np.save(out, np.asarray([str(p) for p in paths]))
    np.save(out, np.asarray(shape, dtype=np.int64))


def add_map_row(out, volume):
    """Append a map to a map rows file: the voxels whose float32 value is not 0.0 (all
    its bits zero; -0.0 and NaN kept), packed, then those values in C order. Every voxel
    left out is exactly 0.0: any mask's values are those of ``volume[mask]`` in float32."""
    values = np.asarray(volume, dtype=np.float32).ravel()
    support = values.view(np.uint32) != 0
    np.save(out, np.packbits(support))
    np.save(out, values[support])


def write_masked_data_from_rows(rows_files, mask, affine, path, dtype=np.float32):
    """:func:`write_masked_data`'s file (the same bytes) from the map rows files of
    consecutive blocks of maps (:func:`add_map_row`) instead of the maps: each map's
    values on ``mask``, one map in memory, the same one-line error for an infinite value
    in the mask. Returns the absolute path as str."""
    mask = np.asarray(mask, dtype=bool)
    flat = mask.ravel()
    heads = []
    for rows_file in rows_files:
        with open(rows_file, "rb") as handle:
            heads.append((np.load(handle), tuple(np.load(handle))))
    if any(shape != mask.shape for _, shape in heads):
        raise ValueError(f"map rows on grids {sorted({s for _, s in heads})}, the mask "
                         f"{mask.shape}")
    n_maps = sum(len(paths) for paths, _ in heads)
    volume = np.zeros(flat.size, dtype=np.float32)
    progress = Progress("masked data")
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        _write_header(out, (n_maps, int(flat.sum())), dtype)
        done = 0
        for rows_file, (paths, _) in zip(rows_files, heads):
            with open(rows_file, "rb") as handle:
                np.load(handle), np.load(handle)  # the head, read above
                for map_path in paths:
                    support = np.unpackbits(np.load(handle), count=flat.size).view(bool)
                    volume[:] = 0
                    volume[support] = np.load(handle)
                    values = volume[flat]
                    _check_values(values, mask, affine, map_path, positive=False)
                    out.write(np.ascontiguousarray(values, dtype=dtype).tobytes())
                    done += 1
                    progress(done, n_maps, "maps")
    return str(Path(path).absolute())


def _write_header(out, shape, dtype):
    """The .npy header of a C-ordered array of ``shape`` and ``dtype``."""
    np.lib.format.write_array_header_1_0(out, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": tuple(shape)})


def stack_masked_data(row_files, path):
    """Stack masked data files of consecutive rows into one, atomically; return its path.

    The result is byte for byte the file :func:`write_masked_data` writes from
    all the maps at once: the header of the whole shape, then every block's rows
    in order. The rows are copied in pieces, so memory does not grow with the
    data; a single block is hard-linked (no copy, no second copy on disk) where
    the filesystem allows it.
    """
    layouts = []
    for row_file in row_files:
        with open(row_file, "rb") as handle:
            layouts.append(_npy_layout(handle))
    (_, n_voxels), dtype, _ = layouts[0]
    for row_file, ((_, width), file_dtype, _) in zip(row_files, layouts):
        if width != n_voxels or file_dtype != dtype:
            raise ValueError(f"masked data block {row_file} has {width} {file_dtype} "
                             f"columns, the first block {n_voxels} {dtype}")
    n_maps = sum(shape[0] for shape, _, _ in layouts)
    with atomic_path(path) as tmp:
        if len(row_files) != 1 or not _hard_link(row_files[0], tmp):
            with open(tmp, "wb") as out:
                _write_header(out, (n_maps, n_voxels), dtype)
                for row_file, (_, _, offset) in zip(row_files, layouts):
                    with open(row_file, "rb") as block:
                        block.seek(offset)
                        shutil.copyfileobj(block, out, 16 * 2**20)
    return str(Path(path).absolute())


def _hard_link(source, tmp):
    """Make the temporary path ``tmp`` (not yet a file) a hard link to ``source``; False
    if the filesystem refuses."""
    try:
        os.link(source, tmp)
    except OSError:
        return False
    return True


def _check_values(values, mask, affine, path, positive):
    """One-line error if a map's in-mask ``values`` are not finite (or, ``positive``, > 0)."""
    bad = np.isinf(values)  # NaN is a missing value (stats.missing), infinite is invalid
    if positive:
        what, problem = "variance map", "a variance of 0 or less"
        bad |= ~(values > 0)
    else:
        what, problem = "input map", "an infinite value"
    if not bad.any():
        return
    first = int(np.flatnonzero(bad)[0])
    voxel = np.argwhere(mask)[first]
    mm = np.asarray(affine)[:3, :3] @ voxel + np.asarray(affine)[:3, 3]
    hint = ("; a weighted estimate needs positive first-level variances wherever the "
            "maps are analysed (fix the variance maps, or use --estimation ols)"
            if positive else "")
    raise bad_input(f"{what} {path}", f"has {problem} at {int(bad.sum())} voxel(s) of the "
                    f"analysis mask (first: {values[first]:g} at voxel "
                    f"{tuple(int(v) for v in voxel)}, "
                    f"{tuple(round(float(c), 1) for c in mm)} mm){hint}")


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
