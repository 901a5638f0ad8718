"""The Brainomics/Localizer maps as the analysis needs them: first-level variances from t.

nilearn's fetcher gives each subject's contrast (effect) map and its t map
(SPM's first level); a variance-weighted group analysis needs each effect's
variance, which is (effect / t)^2 since t = effect / sqrt(variance).
"""

import numpy as np


def variance_from_t(effect, t):
    """Variance of a contrast from its t map: (effect / t)^2, NaN where that is undefined.

    Where t is 0 (or either value is not finite) the variance cannot be
    recovered (outside the subject's brain in SPM maps): NaN, so the analysis
    mask leaves those voxels out, rather than 0, an infinite weight that a
    variance-weighted estimate refuses.
    """
    effect = np.asarray(effect, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (effect / t) ** 2
    return np.where(np.isfinite(variance), variance, np.nan)
