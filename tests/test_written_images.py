"""Images the package writes (``save_img``, zlib-ng's gzip) are nibabel's, byte for byte
once decompressed, in a standard gzip stream that gives the same bytes every time."""

import copy
import gzip

import nibabel as nib
import numpy as np
import pytest

from nipype_secondlevel.io.files import save_img

AFFINE = np.array([[-3.0, 0, 0, 78], [0, 3.0, 0, -111], [0, 0, 3.0, -51], [0, 0, 0, 1]])


def image(dtype):
    data = np.random.default_rng(0).standard_normal((23, 19, 17)) * 100
    img = nib.Nifti1Image(data.astype(dtype), AFFINE)
    if np.dtype(dtype).kind == "i":
        img.header.set_slope_inter(0.5, 3.0)  # scaled integers
    return img


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_a_written_map_is_nibabels_and_the_same_bytes_every_time(tmp_path, dtype):
    ours, theirs = tmp_path / "ours.nii.gz", tmp_path / "theirs.nii.gz"
    save_img(image(dtype), ours)
    nib.save(image(dtype), theirs)
    with gzip.open(ours) as a, gzip.open(theirs) as b:  # (the CRC checked at the end)
        assert a.read() == b.read()
    np.testing.assert_array_equal(nib.load(ours).get_fdata(), nib.load(theirs).get_fdata())
    header = ours.read_bytes()[:10]
    assert header[3] & 0x08 == 0  # no file name in the stream
    assert header[4:8] == b"\0\0\0\0"  # dated 0, as nibabel's
    again = tmp_path / "again.nii.gz"
    save_img(image(dtype), again)
    assert again.read_bytes() == ours.read_bytes()


def test_a_saved_image_can_still_be_copied_and_read(tmp_path):
    # nibabel's writer points the image at the stream it wrote; closed after, it could
    # not be copied (nilearn deep-copies images it thresholds)
    img = image(np.float32)
    save_img(img, tmp_path / "map.nii.gz")
    np.testing.assert_array_equal(copy.deepcopy(img).get_fdata(), img.get_fdata())


def test_an_uncompressed_map_is_nibabels(tmp_path):
    save_img(image(np.float32), tmp_path / "ours.nii")
    nib.save(image(np.float32), tmp_path / "theirs.nii")
    assert (tmp_path / "ours.nii").read_bytes() == (tmp_path / "theirs.nii").read_bytes()
