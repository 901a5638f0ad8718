"""Mixed-effects references written out with scipy, one voxel at a time (for the tests)."""

import numpy as np
from scipy import linalg, optimize


def reference_reml_loglik(X, y, v, s):
    """REML log-likelihood from the error contrasts K'y, K'X = 0 (one voxel).

    l(s) = -1/2 [log|K'DK| + y'K (K'DK)^-1 K'y], D = diag(v + s)
    """
    K = linalg.null_space(X.T)
    S = K.T @ np.diag(v + s) @ K
    z = K.T @ y
    chol = linalg.cho_factor(S)
    logdet = 2.0 * np.log(np.diag(chol[0])).sum()
    return -0.5 * (logdet + z @ linalg.cho_solve(chol, z))


def reference_reml_sigma2(X, y, v):
    """(s, log-likelihood, upper bound): bounded scalar maximisation of the
    likelihood above on [0, 20 var(y)]; 0 where the boundary is at least as likely."""
    upper = 20.0 * np.var(y)
    res = optimize.minimize_scalar(lambda s: -reference_reml_loglik(X, y, v, s),
                                   bounds=(0.0, upper), method="bounded",
                                   options={"xatol": 1e-10})
    if reference_reml_loglik(X, y, v, 0.0) >= -res.fun:
        return 0.0, reference_reml_loglik(X, y, v, 0.0), upper
    return res.x, -res.fun, upper


def reference_gls(X, y, v, s):
    """GLS with W = diag(1/(v + s)) and explicit matrices: (beta, cov_beta, var(s)),
    var(s) = 2 / tr(PP), P = W - W X (X'WX)^-1 X'W."""
    W = np.diag(1.0 / (v + s))
    cov = np.linalg.inv(X.T @ W @ X)
    P = W - W @ X @ cov @ X.T @ W
    return cov @ X.T @ W @ y, cov, 2.0 / np.trace(P @ P)
