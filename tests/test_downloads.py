"""Interrupted or corrupted downloads in the Localizer data folder are fetched again, never used.

nilearn's downloader is pointed at a loopback HTTP server (no internet needed).
"""

import gzip
import http.server
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_in
from localizer_folder import make_localizer_folder

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.datasets.simulation import LOCALIZER_AFFINE
from nipype_secondlevel.io.errors import InputError

CONTRASTS = ["vertical checkerboard", "horizontal checkerboard"]
TRUNCATED = ("S02", "VerticalCheckerboard")
NOT_NIFTI = ("S03", "HorizontalCheckerboard")


def osf_id(subject, name):
    """The download id make_localizer_folder's index gives a map."""
    return f"{subject}{name}cmaps"


def map_path(root, subject, name):
    return root / "brainomics_data" / subject / f"cmaps_{name}.nii.gz"


def good_nifti_bytes(tmp_path, seed):
    path = tmp_path / f"good{seed}.nii.gz"
    volume = np.random.default_rng(seed).normal(size=(6, 7, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, LOCALIZER_AFFINE), path)
    return path.read_bytes()


@pytest.fixture
def server(monkeypatch):
    """A loopback server for {download id: bytes}; nilearn's downloads go to it."""
    served, requested = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            key = self.path.strip("/")
            requested.append(key)
            body = served.get(key)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    from nilearn.datasets import _utils

    original = _utils.fetch_single_file
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"

    def loopback(url, *args, **kwargs):
        return original(url.replace("https://osf.io/download/", base), *args, **kwargs)

    monkeypatch.setattr(_utils, "fetch_single_file", loopback)
    yield served, requested
    httpd.shutdown()
    httpd.server_close()


def corrupt_folder(data_dir):
    root = make_localizer_folder(data_dir, 3, CONTRASTS)
    truncated = map_path(root, *TRUNCATED)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    map_path(root, *NOT_NIFTI).write_text("<html>429 Too Many Requests</html>")
    # A bad copy in one of nilearn's sandbox folders would be moved back in place.
    sandbox = root / ("0123456789abcdef" * 2) / truncated.relative_to(root)
    sandbox.parent.mkdir(parents=True)
    sandbox.write_bytes(truncated.read_bytes())
    return root


def test_truncated_and_non_nifti_downloads_are_fetched_again(tmp_path, server):
    served, requested = server
    root = corrupt_folder(tmp_path / "data")
    good = {osf_id(*TRUNCATED): good_nifti_bytes(tmp_path, 1),
            osf_id(*NOT_NIFTI): good_nifti_bytes(tmp_path, 2)}
    served.update(good)
    out = run_in(tmp_path / "node", ifc.FetchLocalizer(n_subjects=3,
                                                       data_dir=str(tmp_path / "data")))
    assert sorted(requested) == sorted(good)  # only the two bad files, once each
    for subject, name in (TRUNCATED, NOT_NIFTI):
        assert map_path(root, subject, name).read_bytes() == good[osf_id(subject, name)]
    assert len(out.cmaps) == 6
    for path in out.cmaps:
        np.asanyarray(nib.load(path).dataobj)  # every map reads in full


def test_a_download_still_bad_after_a_new_fetch_is_named(tmp_path, server):
    served, _ = server
    root = corrupt_folder(tmp_path / "data")
    still_truncated = gzip.compress(b"\0" * 400)[:30]
    served.update({osf_id(*TRUNCATED): still_truncated,
                   osf_id(*NOT_NIFTI): good_nifti_bytes(tmp_path, 2)})
    with pytest.raises(InputError) as err:
        run_in(tmp_path / "node", ifc.FetchLocalizer(n_subjects=3,
                                                     data_dir=str(tmp_path / "data")))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"Localizer map {map_path(root, *TRUNCATED)}: is not a complete "
                              "NIfTI image even after downloading it again (")


def test_without_network_a_bad_file_is_reported_missing_not_used(tmp_path, monkeypatch):
    from nilearn.datasets import _utils

    original = _utils.fetch_single_file
    monkeypatch.setattr(_utils, "fetch_single_file", lambda url, *a, **k: original(
        url.replace("https://osf.io/download/", "http://127.0.0.1:9/"), *a, **k))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    root = corrupt_folder(tmp_path / "data")
    with pytest.raises(InputError) as err:
        run_in(tmp_path / "node", ifc.FetchLocalizer(n_subjects=3,
                                                     data_dir=str(tmp_path / "data")))
    relative = Path("brainomics_data", TRUNCATED[0], f"cmaps_{TRUNCATED[1]}.nii.gz")
    assert str(err.value) == (
        f"Localizer data folder {root}: download failed (ConnectionError) and 1 needed "
        f"file(s) are missing, e.g. {relative}"
    )
    assert not map_path(root, *TRUNCATED).exists()  # deleted, never used
