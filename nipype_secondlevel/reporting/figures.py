"""Pictures of results (nilearn and matplotlib, Agg backend only): design matrices, glass
brains and slices as files or as ``data:`` URIs for the report, the mask montage, the
workflow graph."""

import base64
import io
import shutil
import subprocess
from pathlib import Path

from ..io.files import save_figure


def _pyplot():
    """pyplot on the Agg backend: pictures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Most row labels written on a design picture; beyond, every k-th row is labelled.
MAX_ROW_LABELS = 60


def plain_text(label):
    """``label`` as matplotlib draws it literally: ``$`` escaped, so that a label such as
    ``$\\alpha$`` is not parsed as mathematics (which fails on unknown symbols)."""
    return str(label).replace("$", r"\$")


def plot_design(design, path, title=None, row_labels=None):
    """Save nilearn's picture of a design matrix (DataFrame) as PNG.

    ``row_labels`` (one per row, e.g. "S01 vertical") are written beside the
    rows (at most :data:`MAX_ROW_LABELS`, evenly spaced).
    """
    plt = _pyplot()
    from nilearn.plotting import plot_design_matrix

    n_cols = design.shape[1]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * n_cols + 2.0), 6.0))
    shown = design.set_axis([plain_text(c) for c in design.columns], axis=1)
    plot_design_matrix(shown, axes=ax)
    if row_labels is not None:
        step = max(1, -(-len(row_labels) // MAX_ROW_LABELS))
        rows = list(range(0, len(row_labels), step))
        ax.set_yticks(rows)
        ax.set_yticklabels([plain_text(row_labels[i]) for i in rows],
                           fontsize=max(4.0, min(8.0, 360.0 / max(len(rows), 1))))
        ax.set_ylabel("map")
    if title:
        ax.set_title(plain_text(title))
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_glass_brain(stat_img, path, threshold, title):
    """Save a glass brain (colour bar, signed values as in nilearn's example) as PNG."""
    plt = _pyplot()
    from nilearn.plotting import plot_glass_brain as nilearn_glass_brain

    fig = plt.figure(figsize=(10.0, 4.0))
    display = nilearn_glass_brain(
        stat_img, threshold=threshold, colorbar=True, plot_abs=False,
        title=plain_text(title), figure=fig,
    )
    try:
        return save_figure(fig, path)
    finally:
        display.close()
        plt.close(fig)
DPI = 80


def data_uri(data, mime):
    """``data:`` URI of bytes ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def file_data_uri(path):
    """``data:`` URI of a PNG or SVG file."""
    path = Path(path)
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    return data_uri(path.read_bytes(), mime)


def figure_png(fig):
    """The PNG bytes of a matplotlib figure at the report's resolution."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def figure_uri(fig):
    return data_uri(figure_png(fig), "image/png")


_BACKGROUND = {}


def background_img():
    """nilearn's MNI152 T1 at 2 mm, read once per process.

    nilearn's own default background is resampled with splines on every first
    use (about 1 s); taking every second voxel of the same file looks the same
    at report size and costs 0.1 s. The file is read whole, then strided: the
    strided read of the file itself seeks the gzip stream at every run of voxels
    (twice the CPU time, in each of the three nodes drawing on it).
    """
    if "img" not in _BACKGROUND:
        import nibabel as nib
        import numpy as np
        from nilearn.datasets.struct import MNI152_FILE_PATH

        img = nib.load(MNI152_FILE_PATH)
        img = nib.Nifti1Image(img.get_fdata(dtype="float32"), img.affine).slicer[::2, ::2, ::2]
        _BACKGROUND["img"] = nib.Nifti1Image(np.ascontiguousarray(img.dataobj), img.affine)
    return _BACKGROUND["img"]


def peak_coordinates(clusters):
    """MNI (x, y, z) of the strongest peak of a cluster table, or None."""
    if clusters.empty or "Peak Stat" not in clusters:
        return None
    row = clusters.loc[clusters["Peak Stat"].abs().idxmax()]
    return tuple(float(row[c]) for c in ("X", "Y", "Z"))


def slices_png(stat_img, threshold, cut_coords, title):
    """Orthogonal slices of a thresholded map (nilearn plot_stat_map) as PNG bytes."""
    plt = _pyplot()
    from nilearn.plotting import plot_stat_map

    fig = plt.figure(figsize=(9.0, 3.0))
    display = plot_stat_map(
        stat_img, bg_img=background_img(), threshold=threshold, display_mode="ortho",
        cut_coords=cut_coords, colorbar=True, title=plain_text(title), figure=fig,
    )
    try:
        return figure_png(fig)
    finally:
        display.close()
        plt.close(fig)


def glass_brain_uri(stat_img, threshold, title):
    plt = _pyplot()
    from nilearn.plotting import plot_glass_brain

    fig = plt.figure(figsize=(9.0, 3.5))
    display = plot_glass_brain(stat_img, threshold=threshold, colorbar=True, plot_abs=False,
                               title=plain_text(title), figure=fig)
    try:
        return figure_uri(fig)
    finally:
        display.close()
        plt.close(fig)


def mask_uri(mask_img, z_cuts=(-30, -15, 0, 15, 30, 45, 60)):
    """Axial slices of the analysis mask over the MNI152 template, as a PNG URI.

    Drawn as one montage on one matplotlib axes (nilearn's plot_roi makes an
    axes per slice and takes three times as long); neurological view (L left).
    """
    import nibabel as nib
    import numpy as np

    plt = _pyplot()
    mask_img = nib.as_closest_canonical(mask_img)
    mask = np.asanyarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    anatomy = _on_grid(background_img(), mask_img)
    to_voxel = np.linalg.inv(mask_img.affine)
    cuts = [(z, int(np.rint((to_voxel @ [0, 0, z, 1])[2]))) for z in z_cuts]
    cuts = [(z, k) for z, k in cuts if 0 <= k < mask.shape[2]]
    if not cuts:  # not an MNI-like grid: evenly spaced slices
        ks = np.linspace(0, mask.shape[2] - 1, 7).round().astype(int)
        cuts = [(round(float((mask_img.affine @ [0, 0, k, 1])[2])), int(k)) for k in ks]
    anat_tiles = np.concatenate([np.rot90(anatomy[:, :, k]) for _, k in cuts], axis=1)
    mask_tiles = np.concatenate([np.rot90(mask[:, :, k]) for _, k in cuts], axis=1)
    height, width = anat_tiles.shape
    fig = plt.figure(figsize=(9.0, 9.0 * height / width), facecolor="black")
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(anat_tiles, cmap="gray", interpolation="nearest")
    ax.imshow(np.ma.masked_where(~mask_tiles, mask_tiles), cmap="autumn", alpha=0.5,
              interpolation="nearest")
    tile = width / len(cuts)
    for i, (z, _) in enumerate(cuts):
        ax.text(i * tile + 2, height - 3, f"z={z}", color="white", fontsize=8)
    ax.text(2, 8, "L", color="white", fontsize=9)
    ax.text(tile - 8, 8, "R", color="white", fontsize=9)
    ax.set_axis_off()
    try:
        return figure_uri(fig)
    finally:
        plt.close(fig)


def _on_grid(img, reference):
    """Values of ``img`` at the voxel centres of ``reference`` (nearest neighbour)."""
    import numpy as np

    shape = reference.shape[:3]
    ijk = np.indices(shape).reshape(3, -1)
    xyz = reference.affine[:3, :3] @ ijk + reference.affine[:3, 3:]
    to_voxel = np.linalg.inv(img.affine)
    vox = np.rint(to_voxel[:3, :3] @ xyz + to_voxel[:3, 3:]).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(img.shape[:3])[:, None]), axis=0)
    values = np.zeros(ijk.shape[1], dtype=np.float32)
    values[inside] = np.asanyarray(img.dataobj)[tuple(vox[:, inside])]
    return values.reshape(shape)


def draw_graph(dot_source, fmt="svg", timeout=60):
    """The picture (bytes) Graphviz's ``dot`` draws from ``dot_source`` in format ``fmt``.

    Raises OSError when ``dot`` is missing, and subprocess errors when it fails.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise FileNotFoundError("Graphviz's dot program is not installed")
    return subprocess.run([dot, f"-T{fmt}"], input=dot_source.encode(), capture_output=True,
                          check=True, timeout=timeout).stdout


def render_graph(dot_source, timeout=60):
    """The workflow graph as an SVG ``data:`` URI, or (None, why not)."""
    if not dot_source:
        return None, "The workflow graph was not given to the report."
    if shutil.which("dot") is None:
        return None, ("Graphviz's dot program is not installed, so the workflow graph is not "
                      "drawn (e.g. apt-get install graphviz); its DOT source is below.")
    try:
        svg = draw_graph(dot_source, "svg", timeout)
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"dot failed to draw the workflow graph ({type(err).__name__})."
    return data_uri(svg, "image/svg+xml"), None
