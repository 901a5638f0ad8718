"""Small surface and CIFTI inputs written with nibabel alone, for the surface tests.

fsaverage5 GIFTI pairs (10,242 vertices per hemisphere, nilearn's mesh) and a small
CIFTI-2 layout: every 4th vertex of fsaverage5's left cortex, every 6th of the right,
and a 4 x 3 x 2 block of left-thalamus voxels plus 3 voxels of the right putamen.
"""

import nibabel as nib
import numpy as np

N_VERTICES = 10242
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
VOLUME_SHAPE = (91, 109, 91)


def write_gifti(path, values):
    """One float32 data array, as fMRIPrep's ``.func.gii``; returns ``path``."""
    array = nib.gifti.GiftiDataArray(np.asarray(values, dtype=np.float32),
                                     intent="NIFTI_INTENT_NONE",
                                     datatype="NIFTI_TYPE_FLOAT32")
    nib.save(nib.GiftiImage(darrays=[array]), path)
    return path


def write_pair(folder, stem, left, right, space="fsaverage5"):
    """``sub-.._hemi-L_space-.._<stem>.func.gii`` and its hemi-R twin; returns (L, R)."""
    return tuple(write_gifti(folder / f"sub-{stem}_hemi-{h}_space-{space}_stat-effect"
                             f"_statmap.func.gii", values)
                 for h, values in (("L", left), ("R", right)))


def planar_mesh(rows, cols, spacing=3.0):
    """A flat rows x cols grid of vertices, two triangles per square: (xyz, faces)."""
    xyz = np.array([(spacing * c, spacing * r, 0.0) for r in range(rows) for c in range(cols)])
    faces = [(r * cols + c, r * cols + c + 1, (r + 1) * cols + c) for r in range(rows - 1)
             for c in range(cols - 1)]
    faces += [(r * cols + c + 1, (r + 1) * cols + c + 1, (r + 1) * cols + c)
              for r in range(rows - 1) for c in range(cols - 1)]
    return xyz, faces


def smooth_sample(coordinates, n_maps, seed, effect=0.0, centre=0, width=15.0):
    """(n_maps, n_vertices) smooth noise (a few Gaussian bumps per map) plus an effect
    centred on vertex ``centre``: structured like real maps, so clusters form."""
    rng = np.random.default_rng(seed)
    n = len(coordinates)
    out = np.empty((n_maps, n))
    signal = effect * np.exp(-np.sum((coordinates - coordinates[centre]) ** 2, 1)
                             / (2 * width ** 2))
    for i in range(n_maps):
        centres = coordinates[rng.integers(0, n, 12)]
        bumps = rng.standard_normal(12)
        d2 = np.sum((coordinates[:, None, :] - centres[None]) ** 2, axis=2)
        out[i] = np.exp(-d2 / (2 * 12.0 ** 2)) @ bumps + 0.3 * rng.standard_normal(n) + signal
    return out


def cifti_layout():
    """The small brain-model layout of the module notes (nibabel's cifti2 axes)."""
    left = nib.cifti2.BrainModelAxis.from_mask(np.arange(N_VERTICES) % 4 == 0,
                                               name="CortexLeft")
    right = nib.cifti2.BrainModelAxis.from_mask(np.arange(N_VERTICES) % 6 == 0,
                                                name="CortexRight")
    thalamus = np.zeros(VOLUME_SHAPE, dtype=bool)
    thalamus[40:44, 50:53, 30:32] = True
    putamen = np.zeros(VOLUME_SHAPE, dtype=bool)
    putamen[60, 55, 33:36] = True
    volume = [nib.cifti2.BrainModelAxis.from_mask(mask, name=name, affine=AFFINE)
              for mask, name in ((thalamus, "thalamus_left"), (putamen, "putamen_right"))]
    return left + right + volume[0] + volume[1]


def write_cifti(path, rows, brain_models, series=False, names=None):
    """A dscalar (or dtseries) of ``rows`` (n_maps, n_grayordinates); returns ``path``."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    first = (nib.cifti2.SeriesAxis(0, 1.0, len(rows)) if series
             else nib.cifti2.ScalarAxis(names or [f"map{i}" for i in range(len(rows))]))
    img = nib.Cifti2Image(rows, header=(first, brain_models))
    img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_"
                                + ("SERIES" if series else "SCALARS"))
    nib.save(img, path)
    return path
