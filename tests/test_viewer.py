"""The interactive z map viewer: self-contained, threshold marked, drawn by a real browser."""

import html
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pytest
from conftest import run_chromium
from matplotlib.colors import Normalize

from nipype_secondlevel.datasets.simulation import LOCALIZER_AFFINE, LOCALIZER_SHAPE
from nipype_secondlevel.reporting.viewer import threshold_colormap, viewer_html


class Resources(HTMLParser):
    """Every tag, every src/href value and the inline scripts of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.urls, self.scripts, self._script = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [attrs[k] or "" for k in ("src", "href", "srcset", "data") if k in attrs]
        if tag == "script":
            self._script = []

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag):
        if tag == "script":
            self.scripts.append("".join(self._script))
            self._script = None


@pytest.fixture(scope="module")
def fragment():
    rng = np.random.default_rng(0)
    z = np.zeros(LOCALIZER_SHAPE)
    z[8:-8, 8:-8, 8:-8] = rng.normal(size=tuple(s - 16 for s in LOCALIZER_SHAPE))
    z[20:26, 20:26, 20:26] += 6.0
    z[30:34, 34:38, 22:26] -= 6.0
    return viewer_html(nib.Nifti1Image(z.astype(np.float32), LOCALIZER_AFFINE), 3.1,
                       title="faces")


def test_the_viewer_fetches_nothing(fragment):
    outer = Resources(fragment)
    assert outer.tags == ["figure", "iframe", "figcaption"]
    assert "|z| &lt; 3.10" in fragment
    page = html.unescape(fragment.split('srcdoc="', 1)[1].split('"', 1)[0])
    inner = Resources(page)
    assert "canvas" in inner.tags and "link" not in inner.tags
    for url in inner.urls:
        assert url.startswith("data:image/png;base64,"), url[:80]
    # nilearn's JavaScript (jQuery, brainsprite) is inline: no script has a src.
    assert len(inner.scripts) >= 3 and any("brainsprite" in s for s in inner.scripts)
    assert "@import" not in page and "url(http" not in page


def test_the_threshold_is_marked_by_the_colour_map():
    cmap = threshold_colormap(3.1, vmax=6.2)
    norm = Normalize(-6.2, 6.2)
    for z, opaque in ((0.0, False), (3.0, False), (-3.0, False), (3.2, True), (-3.2, True),
                      (6.0, True)):
        assert bool(cmap(norm(z))[3] == 1.0) is opaque, z
    one_sided = threshold_colormap(3.1, vmax=6.2, two_sided=False)
    assert one_sided(norm(-5.0))[3] < 1.0 and one_sided(norm(5.0))[3] == 1.0


def test_the_viewer_draws_in_headless_chromium_with_no_network(fragment, tmp_path):
    from PIL import Image

    page = tmp_path / "viewer.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>viewer</title>"
                    f"</head><body style='margin:0;background:#fff'>{fragment}</body></html>",
                    encoding="utf-8")
    screenshot = tmp_path / "viewer.png"
    shot = run_chromium(page.as_uri(), tmp_path, "--window-size=800,600",
                        "--virtual-time-budget=10000", f"--screenshot={screenshot}")
    assert screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    # The page is white; the canvas, transparent until brainsprite draws on it, gets the
    # viewer's black background, the template's greys and the map's red and blue blobs.
    assert (rgb.max(axis=2) < 40).mean() > 0.05
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 90) & (rgb[..., 1] < 150)
    assert red.sum() > 20 and blue.sum() > 20
