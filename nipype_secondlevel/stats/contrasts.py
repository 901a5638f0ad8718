"""Every map of one contrast, from an OLS or a variance-weighted (mixed/fixed) estimate."""

from types import SimpleNamespace

import numpy as np

from .glm import f_contrast, f_to_z, t_contrast, t_to_p, t_to_z
from .mixed_effects import (
    mixed_effects_contrast,
    mixed_effects_contrast_kenward_roger,
    mixed_effects_f_contrast,
)


def contrast_maps(X, beta, weights, dof, residual_variance=None, cov_beta=None,
                  kenward_roger=None):
    """Voxel values of every map of one contrast, from an OLS or a variance-weighted fit.

    One row of ``weights``: z, t, p (one-sided), effect, variance. Several rows:
    z, F, p (F test on (rows, dof) degrees of freedom). With ``cov_beta``
    (p, p, n_voxels), as written by EstimateMixedEffects, the covariance of
    the estimates is taken from it; otherwise from ``X`` and
    ``residual_variance`` (OLS). With ``kenward_roger`` (the arrays of
    EstimateMixedEffects' .npz) a t contrast uses the Kenward-Roger covariance
    and per-voxel dof; F contrasts keep ``dof``. Returns (maps, dof used).
    """
    rows = np.atleast_2d(np.asarray(weights, dtype=float))
    fit = None
    if cov_beta is not None:
        fit = SimpleNamespace(beta=beta, cov_beta=cov_beta, dof=dof, **(kenward_roger or {}))
    if len(rows) == 1:
        if kenward_roger is not None:
            effect, variance, t, dof = mixed_effects_contrast_kenward_roger(fit, rows[0])
        elif fit is not None:
            effect, variance, t = mixed_effects_contrast(fit, rows[0])
        else:
            effect, variance, t = t_contrast(X, beta, residual_variance, rows[0])
        return {"z": t_to_z(t, dof), "t": t, "p": t_to_p(t, dof), "effect": effect,
                "variance": variance}, dof
    from scipy import stats

    if fit is not None:
        f, q = mixed_effects_f_contrast(fit, rows)
    else:
        f, q = f_contrast(X, beta, residual_variance, rows)
    return {"z": f_to_z(f, q, dof), "F": f, "p": stats.f.sf(f, q, dof)}, dof
