"""Pictures of results: design matrices and glass brains (nilearn, Agg backend)."""

import matplotlib

from .io import save_figure


def _pyplot():
    """pyplot on the Agg backend: pictures are written to files, never shown."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_design(design, path, title=None):
    """Save nilearn's picture of a design matrix (DataFrame) as PNG."""
    plt = _pyplot()
    from nilearn.plotting import plot_design_matrix

    n_cols = design.shape[1]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * n_cols + 2.0), 6.0))
    plot_design_matrix(design, axes=ax)
    if title:
        ax.set_title(title)
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
        title=title, figure=fig,
    )
    try:
        return save_figure(fig, path)
    finally:
        display.close()
        plt.close(fig)
