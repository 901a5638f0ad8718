"""Maps with per-subject coverage, as arrays (n_maps, n_voxels), for the coverage tests.

Every subject's map covers its own mask: a dropout region missing in some
subjects, one subject with a smaller field of view, a band where only one group
is left, and voxels with very few subjects. Missing values are written the way
first-level tools write them: NaN (SPM), or 0 in both the effect and the
variance map (FSL, nilearn).
"""

import numpy as np

N_VOXELS = 240


def coverage_masks(n_subjects, groups, n_voxels=N_VOXELS):
    """(n_subjects, n_voxels) bool: True where the subject has data."""
    present = np.ones((n_subjects, n_voxels), dtype=bool)
    present[[1, 4, 6], 20:70] = False  # dropout in three subjects
    present[n_subjects - 1, 180:] = False  # a smaller field of view
    patients = np.flatnonzero(groups == 1)
    present[patients, 100:120] = False  # a band with one group only
    present[2:, 130:140] = False  # two subjects left
    present[:, 150:155] = False  # nobody
    present[3, 60:90] = False
    return present


def coverage_sample(seed=0, n_subjects=12, n_voxels=N_VOXELS, variance_range=(0.2, 2.0)):
    """(groups, age, Y, V, present): effects and variances with missing values marked the
    first-level way (NaN for even subjects, 0 in effect and variance for odd ones)."""
    rng = np.random.default_rng(seed)
    groups = np.arange(n_subjects) % 2
    age = rng.uniform(20, 60, n_subjects)
    V = rng.uniform(*variance_range, (n_subjects, n_voxels))
    between = rng.uniform(0.2, 1.5, n_voxels)
    Y = (0.4 * groups[:, None] + 0.02 * age[:, None] + rng.normal(size=(n_subjects, n_voxels))
         * np.sqrt(between) + rng.normal(size=(n_subjects, n_voxels)) * np.sqrt(V))
    present = coverage_masks(n_subjects, groups, n_voxels)
    absent = ~present
    nan_rows = (np.arange(n_subjects) % 2 == 0)[:, None]
    Y = np.where(absent & nan_rows, np.nan, np.where(absent, 0.0, Y)).astype(np.float32)
    V = np.where(absent & nan_rows, np.nan, np.where(absent, 0.0, V)).astype(np.float32)
    return groups, age, Y, V, present


def designs(groups, age):
    """{name: (X, t contrast, F contrast or None)} of the three designs tested."""
    n = groups.size
    two = np.column_stack([groups == 0, groups == 1]).astype(float)
    centred = age - age.mean()
    return {
        "one-sample": (np.ones((n, 1)), np.array([1.0]), None),
        "two-sample": (two, np.array([1.0, -1.0]), None),
        "covariate": (np.column_stack([two, centred]), np.array([0.0, 0.0, 1.0]),
                      np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])),
    }
