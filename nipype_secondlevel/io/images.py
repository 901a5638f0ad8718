"""Reading images and masks, one-line errors for unreadable ones; masked values back to volumes."""

import functools
import gzip
import warnings
from pathlib import Path

try:  # zlib-ng's gzip: the same streams and checksums, 1.7x faster on 2 mm maps
    from zlib_ng import gzip_ng as fast_gzip
except ImportError:  # pragma: no cover - a dependency; the standard one still reads them
    fast_gzip = gzip

import nibabel as nib
import numpy as np

from .errors import InputWarning, bad_input

#: Largest magnitude the maps are analysed with: they are read into float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


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


def data_end(offset, shape, dtype):
    """Bytes of an image's file up to the end of its data, from its header: the data
    offset plus the voxels' bytes."""
    return int(offset) + int(np.prod(shape)) * np.dtype(dtype).itemsize


def nifti1_header(path):
    """The header of a single-file NIfTI-1 image (``.nii``, ``.nii.gz``) as nibabel's loader
    reads it (its checks and fixes), from the file's first 348 bytes alone; None for any
    other file, left to nibabel's loader. Five times faster than loading the image (the
    loader reads and checks the header twice to find the format): the up-front checks of a
    large table read one header per map."""
    name = str(path)
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        with (fast_gzip.open if name.endswith(".gz") else open)(path, "rb") as stream:
            return _checked_header(stream.read(348))
    except Exception:  # noqa: BLE001 - short, unreadable, bad: the loader's error says why
        return None


@functools.lru_cache(maxsize=64)
def _checked_header(block):
    """A NIfTI-1 header from its bytes, checked and fixed as nibabel's loader does (the
    maps of one pipeline often have the same header: checked once); None for another
    format. Not to be modified (shared)."""
    header = nib.Nifti1Header(binaryblock=block, check=False)
    if header["sizeof_hdr"] != 348 or header["magic"] != b"n+1":
        return None
    header.check_fix()
    return header


def read_data(img, path, what="image"):
    """The image's data array, with a one-line error naming the file if it cannot be read.

    A truncated or corrupted ``.nii.gz`` passes :func:`load_img` (only its
    header is read) and fails here. nibabel reads a ``.nii.gz`` only as far as its
    voxels, never reaching the gzip checksum, so a corrupted middle would give wrong
    values silently: the stream is decompressed here to its end (checksum verified)
    and the image read from those bytes. The stream is read no further than its
    header's size: a file inflating beyond it (a damaged file, or a small file
    that inflates to gigabytes) is refused before it fills the memory.
    """
    too_long = False
    try:
        # Only an image read from that file (not one made in memory, e.g. a squeezed 4D map).
        if (img.get_filename() is not None and str(path).endswith(".gz")
                and hasattr(type(img), "from_bytes")):
            size = data_end(img.dataobj.offset, img.shape, img.get_data_dtype())
            with fast_gzip.open(path, "rb") as stream:
                # In pieces: one read of a header's size would reserve it, whatever the
                # stream holds (a header claiming 32 GB over 1 MB of data).
                chunks, left = [], size
                while left and (chunk := stream.read(min(left, 1 << 26))):
                    chunks.append(chunk)
                    left -= len(chunk)
                if left:
                    raise EOFError(f"it ends after {size - left:,} of the {size:,} bytes its header gives")
                content = b"".join(chunks)
                too_long = bool(stream.read(1))  # else at the end: the checksum verified
            if not too_long:
                img = type(img).from_bytes(content)
        if not too_long:
            return np.asanyarray(img.dataobj)
    except Exception as err:  # gzip, zlib, EOF and nibabel errors
        raise bad_input(f"{what} {path}", "its data cannot be read (truncated or corrupted "
                        f"file?): {type(err).__name__}: {err}") from err
    raise bad_input(f"{what} {path}", f"inflates beyond the {size:,} bytes its header "
                    "gives (data offset and voxels); refused unread (a damaged file?)")


def check_map_header(path, what="input map"):
    """Check a map from its header alone: readable, 3D, and not shorter than it says.

    The data are not read: an uncompressed file must hold its header's voxels,
    and a gzip file's trailer (the size of its content, modulo 2^32) must match
    them; a trailer that does not (a truncated file, several gzip members, or
    more content than the header gives) is decided by reading the data
    (:func:`read_data`). Returns the 3D shape.
    """
    header = nifti1_header(path)
    if header is None:  # another format, or a bad header: nibabel's loader
        img = load_img(path, what)
        header, affine, offset = img.header, img.affine, img.dataobj.offset
        if "scl_slope" in header:
            with nib.openers.ImageOpener(str(path)) as stream:  # as written (nibabel resets it)
                header = type(header).from_fileobj(stream)
    else:
        affine, offset = header.get_best_affine(), header.get_data_offset()
    check_affine(affine, path, what)
    check_scaling(header, path, what)
    shape = tuple(int(d) for d in header.get_data_shape())
    expected = data_end(offset, shape, header.get_data_dtype())
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise bad_input(f"{what} {path}", f"expected a 3D map, got {len(shape)}D shape {shape}")
    path = Path(path)
    if str(path).endswith(".gz"):
        with open(path, "rb") as stream:
            stream.seek(-4, 2)
            content = int.from_bytes(stream.read(4), "little")
        if content != expected % 2**32:
            read_data(load_img(path, what), path, what)
    elif path.suffix == ".nii" and path.stat().st_size < expected:
        raise bad_input(f"{what} {path}", f"is truncated: {path.stat().st_size} bytes, its "
                        f"header says {expected}")
    return shape


def check_affine(affine, path, what="input map"):
    """Refuse an image whose affine (voxel to world, from its header) is not finite or is
    singular: its voxels have no place in space, so it cannot be resampled or compared."""
    affine = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise bad_input(f"{what} {path}", "its affine (the header's voxel-to-world transform, "
                        "sform or qform) is not finite: fix the header")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise bad_input(f"{what} {path}", "its affine (the header's voxel-to-world transform, "
                        "sform or qform) is singular (a voxel size of 0?): fix the header")


def check_scaling(raw, path, what="input map"):
    """Warn (one line) when the header's scale slope (``raw``: the header as written, not
    a loaded image's, which nibabel resets) is one nibabel ignores: an infinite one, or NaN
    or 0 on integer data, which are then read unscaled."""
    if "scl_slope" not in raw:
        return
    slope = float(raw["scl_slope"])
    integer = raw.get_data_dtype().kind in "iu"
    if np.isinf(slope) or (integer and (np.isnan(slope) or slope == 0)):
        warnings.warn(f"{what} {path}: its header's scale slope (scl_slope) is {slope:g}, "
                      f"which nibabel ignores: its {'integer ' if integer else ''}values are "
                      "read unscaled; if they were scaled, fix the header", InputWarning,
                      stacklevel=2)


def fits_float32(data):
    """True where a value is finite and within float32's range (the maps are analysed in
    float32: a larger value would be infinite there, so it counts as non-finite)."""
    finite = np.isfinite(data)
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            finite &= np.abs(data) <= FLOAT32_MAX
    return finite


def load_mask(path):
    """Load a mask image as (boolean array, image)."""
    img = load_img(path, "mask")
    data = read_data(img, path, "mask")
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
        volume = read_data(img, path, "input map")
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
    """Put voxel values (n_voxels,) or (k, n_voxels) back into an image.

    ``affine``: an affine, or an image (the mask's) whose affine and spatial and time
    units (:func:`keep_units`) the result takes.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        volume = np.full(mask.shape, fill, dtype=dtype)
        volume[mask] = values
    else:
        volume = np.full(mask.shape + (values.shape[0],), fill, dtype=dtype)
        volume[mask] = values.T
    if not hasattr(affine, "affine"):
        return nib.Nifti1Image(volume, affine)
    return keep_units(nib.Nifti1Image(volume, affine.affine), affine)


def stat_intent(img, stat, dof=None):
    """``img`` with the NIfTI intent of statistic ``stat``, so that viewers (FSLeyes, AFNI,
    Mango) show it as one: z, p, t with its degrees of freedom, F with both (``dof``: a
    number for t, [numerator, denominator] for F; None where they vary from voxel to voxel,
    which a NIfTI intent cannot say: t and F are then left without one). Returns ``img``."""
    if stat == "z":
        img.header.set_intent("z score")
    elif stat == "p":
        img.header.set_intent("p value")
    elif stat in ("t", "F") and dof is not None:
        img.header.set_intent("t test" if stat == "t" else "f test",
                              tuple(float(d) for d in np.atleast_1d(dof)))
    return img


def keep_units(img, reference):
    """``img`` with the xyzt units (e.g. mm, s) of ``reference``'s header, when it says
    them (an image written without units is left as it is); returns ``img``."""
    units = reference.header.get_xyzt_units()
    if units != ("unknown", "unknown"):
        img.header.set_xyzt_units(*units)
    return img
