"""An interactive slice viewer of an unthresholded z map for the HTML report, and the
offline page and frame of any nilearn viewer (the surface viewer's too).

nilearn's ``view_img`` (brainsprite) draws the map on nilearn's bundled MNI152
template (at 2 mm, as the report's other figures); its JavaScript and images are
embedded in the page it makes, so the viewer works offline. The threshold is
marked by the colour map: voxels below it are drawn faint and greyed, voxels
above it in full colour, and the colour bar shows the same step at the threshold.
The viewer's page is embedded in an ``<iframe srcdoc>``, so its scripts and ids
cannot clash with the report's.
"""

import html
import re
from html.parser import HTMLParser

import numpy as np

#: A remote address in an attribute or a style (a scheme's or a protocol-relative one).
_REMOTE = re.compile(r"""^\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.IGNORECASE)
_STYLE_REMOTE = re.compile(r"""@import|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""",
                           re.IGNORECASE)
_ICON = re.compile(r"<link\b[^>]*\brel=\"icon\"[^>]*>", re.IGNORECASE | re.DOTALL)


def threshold_colormap(threshold, vmax, two_sided=True, cmap="RdBu_r", faint=0.3):
    """A colour map over ``[-vmax, vmax]`` marking ``threshold``.

    Colours of values below the threshold (``|z| < threshold``, or ``z <
    threshold`` when one-sided) are blended half-way to grey and get opacity
    ``faint``; the others are ``cmap``'s own, opaque.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    values = np.linspace(-vmax, vmax, 256)
    colors = colormaps[cmap](np.linspace(0, 1, 256))
    below = (np.abs(values) < threshold) if two_sided else (values < threshold)
    colors[below, :3] = 0.5 * colors[below, :3] + 0.25
    colors[below, 3] = faint
    return ListedColormap(colors, name=f"{cmap}_threshold{threshold:g}")


def viewer_page(z_img, threshold, two_sided=True, title=None, width=600):
    """The viewer as a standalone HTML page (str) that fetches nothing."""
    from nilearn.plotting import view_img

    from .figures import background_img

    data = np.asanyarray(z_img.dataobj, dtype=float)
    finite = data[np.isfinite(data)]
    vmax = max(float(np.abs(finite).max()) if finite.size else 0.0, 1.5 * threshold, 1e-3)
    view = view_img(
        # the report's MNI152 at 2 mm: nilearn's "MNI152" is the same template
        # resampled to 2 mm by splines on every call (0.6 s)
        z_img, bg_img=background_img(), threshold=1e-6,  # hide only the zeros outside the mask
        cmap=threshold_colormap(threshold, vmax, two_sided), symmetric_cmap=True,
        vmax=vmax, colorbar=True, title=title, width_view=width, black_bg=True,
    )
    return offline_page(view), view.width, view.height


class _Loads(HTMLParser):
    """What a browser would load from elsewhere: tags' src, href, srcset or data
    addresses, and @import or url() in styles (text inside scripts is no load)."""

    def __init__(self, page):
        super().__init__()
        self.remote, self._style = [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self._style = tag == "style"
        for name, value in attrs:
            if (name in ("src", "href", "srcset", "data") and _REMOTE.match(value or "")
                    or name == "style" and _STYLE_REMOTE.search(value or "")):
                self.remote.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data):
        if self._style and _STYLE_REMOTE.search(data):
            self.remote.append(data[:80])

    def handle_endtag(self, tag):
        self._style = False


def offline_page(view):
    """A nilearn viewer's standalone page (str), which loads nothing from elsewhere: its
    favicon link removed; RuntimeError if it refers to any other remote resource."""
    page = _ICON.sub("", view.get_standalone())  # nilearn's favicon is a remote link
    remote = _Loads(page).remote
    if remote:
        raise RuntimeError(f"nilearn's viewer page refers to a remote resource "
                           f"({remote[0][:80]!r})")
    return page


def framed(page, width, height, title, caption):
    """A viewer's page in an ``<iframe srcdoc>`` (its scripts and ids cannot clash with
    the report's) with a caption: ``<figure class="viewer">...``."""
    return (f'<figure class="viewer"><iframe srcdoc="{html.escape(page, quote=True)}" '
            f'width="{width}" height="{height}" style="border:0" '
            f'title="{html.escape(title, quote=True)}">'
            f"</iframe><figcaption>{html.escape(caption)}</figcaption></figure>")


def viewer_html(z_img, threshold, two_sided=True, title=None, caption=None, width=600):
    """An HTML fragment: the interactive viewer of ``z_img`` with ``threshold`` marked.

    Parameters
    ----------
    z_img : nibabel image
        The unthresholded z map (MNI space).
    threshold : float
        The z threshold applied to the map (marked on it and on the colour bar).
    two_sided : bool
        Whether the threshold applies to both signs (``|z|``).
    title : str or None
        Title drawn in the viewer.
    caption : str or None
        Text under the viewer; by default it says how the threshold is drawn.
    width : int
        Width of the viewer in pixels.

    Returns
    -------
    str
        ``<figure class="viewer"><iframe srcdoc=...></iframe><figcaption>...``.
    """
    page, view_width, view_height = viewer_page(z_img, threshold, two_sided, title, width)
    sign = "|z|" if two_sided else "z"
    caption = caption or (f"Unthresholded z map; voxels with {sign} < {threshold:.2f} (below "
                          "the threshold) are faint. Click to move the cursor.")
    return framed(page, view_width, view_height, title or "interactive z map viewer", caption)
