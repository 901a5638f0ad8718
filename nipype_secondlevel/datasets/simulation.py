"""A localizer-like paired sample with a known effect, for runs with no network.

The grid is the Brainomics/Localizer contrast maps' 3 mm MNI grid; the brain
is nilearn's MNI152 brain mask resampled to it. Each subject has a map per
condition: a shared visual response, a per-subject offset, smooth noise and,
in the first condition only, a paired effect made of one positive and one
negative blob in primary visual cortex.
"""

import os
from pathlib import Path

import numpy as np

from ..io.errors import bad_input
from ..spec import DEFAULTS

#: Shape and affine of the Brainomics/Localizer contrast maps (3 mm MNI).
LOCALIZER_SHAPE = (53, 63, 46)
LOCALIZER_AFFINE = np.array(
    [
        [-3.0, 0.0, 0.0, 78.0],
        [0.0, 3.0, 0.0, -111.0],
        [0.0, 0.0, 3.0, -51.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: nilearn's MNI152 brain mask on the Localizer grid (uint8; see :func:`localizer_brain_mask`).
LOCALIZER_MASK_FILE = Path(__file__).parent.parent / "data" / "localizer_brain_mask.nii.gz"
#: Centres (MNI mm) of the positive and negative blobs of the paired effect,
#: left and right calcarine cortex (V1).
EFFECT_CENTRES = {1.0: (-10.0, -88.0, 2.0), -1.0: (12.0, -84.0, 6.0)}
#: Common visual response to both conditions (bilateral occipital).
SHARED_CENTRE = (0.0, -90.0, 0.0)


def simulation_bytes(n_subjects):
    """Memory of :func:`simulate_paired_sample`'s maps (float32, all held at once)."""
    return int(n_subjects) * 2 * int(np.prod(LOCALIZER_SHAPE)) * 4


def localizer_brain_mask():
    """nilearn's MNI152 brain mask on the Localizer grid, as (bool array, affine).

    Read from the package's :data:`LOCALIZER_MASK_FILE`: nilearn's
    ``load_mni152_brain_mask()`` resampled to the grid by nearest neighbour (a test
    checks it against nilearn's), so the simulation imports none of nilearn.
    """
    import nibabel as nib

    return np.asarray(nib.load(LOCALIZER_MASK_FILE).dataobj).astype(bool), LOCALIZER_AFFINE


def mm_grid(shape, affine):
    """World (mm) coordinates of every voxel centre, shape ``shape + (3,)``."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def gaussian_blob(coords, centre, fwhm_mm):
    """exp(-r^2 / (2 s^2)) with s = fwhm / 2.355, r the distance to ``centre``."""
    sigma = fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    r2 = np.sum((coords - np.asarray(centre)) ** 2, axis=-1)
    return np.exp(-r2 / (2.0 * sigma**2))


def smooth_noise(rng, shape, fwhm_vox):
    """White noise smoothed by a Gaussian of ``fwhm_vox`` voxels, rescaled to unit SD."""
    from scipy import ndimage  # (here: the command imports this module to build the demo)

    sigma = fwhm_vox / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std()


def effect_map(shape, affine, amplitude=2.0, fwhm_mm=16.0):
    """The true paired effect (first minus second condition) on the grid."""
    coords = mm_grid(shape, affine)
    return sum(
        sign * amplitude * gaussian_blob(coords, centre, fwhm_mm)
        for sign, centre in EFFECT_CENTRES.items()
    )


def check_simulation_fits(n_subjects):
    """Refuse a simulated sample larger than this machine's memory (it is made at once)."""
    needed = simulation_bytes(n_subjects)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every system
        return
    if needed > available:
        raise bad_input(f"--n-subjects {n_subjects}", f"the simulation holds every map in "
                        f"memory ({needed / 2**30:.1f} GiB), more than this machine has "
                        f"({available / 2**30:.1f} GiB)")


def simulation_rows(n_subjects, conditions):
    """Subject and condition of every simulated map, in the simulation's table order
    (each subject's conditions in turn): the rows a plan is made of before the run."""
    return [{"subject": f"S{s + 1:02d}", "condition": str(c)}
            for s in range(int(n_subjects)) for c in conditions]


def simulate_paired_sample(
    mask,
    affine,
    n_subjects=DEFAULTS["n_subjects"],
    seed=DEFAULTS["seed"],
    effect_amplitude=2.0,
    noise_fwhm_vox=2.5,
    truth_fraction=0.5,
):
    """Simulate ``n_subjects`` x 2 condition maps (float32, zero outside ``mask``).

    map[s, c] = shared + offset_s + (c == 0) * effect + noise_{s,c}

    Returns
    -------
    maps : ndarray (n_subjects, 2) + shape, float32
    truth : ndarray int8, +1 / -1 where |effect| >= truth_fraction * amplitude
        (the sign of the effect), 0 elsewhere
    """
    rng = np.random.default_rng(seed)
    shape = mask.shape
    coords = mm_grid(shape, affine)
    shared = 3.0 * gaussian_blob(coords, SHARED_CENTRE, 30.0)
    effect = effect_map(shape, affine, effect_amplitude)
    maps = np.zeros((n_subjects, 2) + shape, dtype=np.float32)
    for subject in range(n_subjects):
        offset = rng.normal(0.0, 1.0) + 0.5 * smooth_noise(rng, shape, 8.0)
        for condition in range(2):
            volume = shared + offset + smooth_noise(rng, shape, noise_fwhm_vox)
            if condition == 0:
                volume = volume + effect
            maps[subject, condition] = np.where(mask, volume, 0.0)
    truth = np.zeros(shape, dtype=np.int8)
    strong = (np.abs(effect) >= truth_fraction * effect_amplitude) & mask
    truth[strong] = np.sign(effect[strong]).astype(np.int8)
    return maps, truth
