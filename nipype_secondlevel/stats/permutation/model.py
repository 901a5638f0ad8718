"""Freedman-Lane permutation of a linear model, for t and F contrasts.

Winkler et al. (2014, NeuroImage 92:381-397; Table 2 and Appendix A) with the
partition of Smith et al. (2007): for a design X (n, p) and contrast rows C
(q, p), Q = (X'X)^+,

    x = X Q C' (C Q C')^-1        regressors of interest (n, q)
    Z = X (I - Q C' (C Q C')^-1 C)  nuisance, orthogonal to x, span([x Z]) = span(X)

Each pattern G (sign flips or a row permutation) gives the data
Y* = G R_Z Y + H_Z Y (H_Z the projection on span(Z), R_Z = I - H_Z), to which
X is refitted. With R = R_Z Y normalised to unit norm at every voxel, U_x an
orthonormal basis of span(x) and U_X = [U_x, U_Z] of span(X) (H_Z Y adds
nothing to either projection, nor to the residuals of X):

    t = u' G R / sqrt((1 - ||U_X' G R||^2) / dof)               (q = 1, u = U_x)
    F = (||U_x' G R||^2 / q) / ((1 - ||U_X' G R||^2) / dof)

with dof = n - rank(X). For G = I these are the t and F of the OLS fit. Sign
flips assume independent, symmetric errors; permutations exchangeable errors
(within exchangeability blocks). With no nuisance (one-sample, or a single
regressor) this is plain sign flipping / permutation of Y.
"""

from dataclasses import dataclass

import numpy as np

from ...spec import VOXEL_BLOCK  # data are prepared in blocks of it: see spec
from .. import glm, spatial

#: Residual norms below this fraction of the data's norm count as 0 (rounding).
RESIDUAL_RTOL = 1e-12


@dataclass(frozen=True)
class LinearModel:
    """A design and a contrast, prepared for permutation (see :func:`linear_model`).

    Attributes
    ----------
    X : ndarray (n, p)
    contrast : ndarray (q, p)
    interest : ndarray (n, q)
        Orthonormal basis U_x of the regressors of interest; for a t contrast
        the single column points along c beta (u' y has the sign of c beta).
    nuisance : ndarray (n, r)
        Orthonormal basis U_Z of the nuisance space (r = rank(X) - q, may be 0).
    dof : float
        n - rank(X).
    """

    X: np.ndarray
    contrast: np.ndarray
    interest: np.ndarray
    nuisance: np.ndarray
    dof: float

    @property
    def n_subjects(self):
        """Number of rows of the design."""
        return self.X.shape[0]

    @property
    def q(self):
        """Number of contrast rows (1 for t)."""
        return self.contrast.shape[0]

    @property
    def statistic(self):
        """"t" for one contrast row, "F" for several."""
        return "t" if self.q == 1 else "F"

    @property
    def basis(self):
        """[U_x, U_Z]: orthonormal basis of span(X), regressors of interest first."""
        return np.column_stack([self.interest, self.nuisance])

    @property
    def degrees_of_freedom(self):
        """dof for t, [q, dof] for F."""
        return self.dof if self.q == 1 else [self.q, self.dof]


def orthonormal_basis(M, tol=1e-10):
    """Orthonormal basis of the column space of ``M`` (SVD)."""
    M = np.asarray(M, dtype=float)
    if M.shape[1] == 0:
        return np.zeros((M.shape[0], 0))
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    return U[:, s > tol * max(s.max(), 1.0)]


def partition_design(X, contrast):
    """Regressors of interest x (n, q) and an orthonormal nuisance basis Z.

    x = X Q C' (C Q C')^-1 ; Z = X (I - Q C' (C Q C')^-1 C) ; Q = (X'X)^+
    """
    X = np.asarray(X, dtype=float)
    C = np.atleast_2d(np.asarray(contrast, dtype=float))
    if C.shape[1] != X.shape[1]:
        raise ValueError(f"contrast has {C.shape[1]} weights per row but the design "
                         f"has {X.shape[1]} columns")
    if not np.allclose(C @ np.linalg.pinv(X) @ X, C, atol=1e-8 * max(np.abs(C).max(), 1)):
        raise ValueError("contrast is not estimable for this design")
    Q = np.linalg.pinv(X.T @ X)
    cqc = C @ Q @ C.T
    if np.linalg.matrix_rank(cqc) < C.shape[0]:
        raise ValueError("contrast rows are linearly dependent for this design")
    inverse = np.linalg.inv(cqc)
    x = X @ Q @ C.T @ inverse
    Z = X @ (np.eye(X.shape[1]) - Q @ C.T @ inverse @ C)
    return x, orthonormal_basis(Z)


def linear_model(X=None, contrast=None, n_subjects=None):
    """Prepare a design and a t or F contrast for (Freedman-Lane) permutation.

    Parameters
    ----------
    X : array (n, p) or None
        Design; None means the one-sample design ``ones((n_subjects, 1))``.
    contrast : array (p,) or (q, p), or None
        One row: a t contrast; several: an F contrast. None means ``[1]``
        (one-column designs only).
    n_subjects : int or None
        Needed when ``X`` is None.

    Returns
    -------
    LinearModel
    """
    if X is None:
        if n_subjects is None:
            raise ValueError("give X or n_subjects")
        X = np.ones((int(n_subjects), 1))
    X = np.asarray(X, dtype=float)
    if contrast is None:
        if X.shape[1] != 1:
            raise ValueError("contrast is required for a multi-column design")
        contrast = [1.0]
    C = np.atleast_2d(np.asarray(contrast, dtype=float))
    x, Z = partition_design(X, C)
    if C.shape[0] == 1:
        interest = x / np.linalg.norm(x)  # x is along a = X Q c', c beta = a . y
    else:
        interest = orthonormal_basis(x)
    return LinearModel(X=X, contrast=C, interest=interest, nuisance=Z,
                       dof=glm.residual_dof(X))


def one_sample_model(n_subjects):
    """Intercept-only design (one-sample or paired-differences t test)."""
    return linear_model(None, None, n_subjects=n_subjects)


def choose_scheme(model, scheme="auto", blocks=None):
    """The scheme a test uses: ``scheme``, or the automatic choice.

    Permutations (within exchangeability blocks) cannot test a regressor of
    interest that is constant within every block (e.g. an intercept): they
    leave u' G R unchanged. "auto" then takes sign flips, else permutations.

    Raises ValueError for ``scheme="permute"`` in that case.
    """
    codes = np.zeros(model.n_subjects, dtype=int)
    if blocks is not None and len(blocks):
        if len(blocks) != model.n_subjects:
            raise ValueError(f"{len(blocks)} block labels for {model.n_subjects} rows")
        _, codes = np.unique(np.asarray(blocks, dtype=str), return_inverse=True)
    x = model.interest
    tol = 1e-8 * max(np.abs(x).max(), 1e-300)
    constant = all(np.ptp(x[codes == b], axis=0).max() <= tol for b in np.unique(codes))
    if scheme == "auto":
        return "sign-flip" if constant else "permute"
    if scheme == "permute" and constant:
        where = " within every exchangeability block" if codes.max() > 0 else ""
        raise ValueError("permutations cannot test this contrast: its regressor of "
                         f"interest is constant{where} (e.g. an intercept); use sign flips")
    if scheme not in ("sign-flip", "permute"):
        raise ValueError(f"scheme must be auto, sign-flip or permute, got {scheme!r}")
    return scheme


@dataclass(frozen=True)
class PreparedData:
    """Voxel data reduced for permutation (see :func:`prepare_data`).

    Attributes
    ----------
    residuals : ndarray (n, n_voxels), column-major
        R_Z Y divided by its norm at every voxel (0 for a voxel whose residuals
        are all 0).
    scale : ndarray (n_voxels,)
        ||R_Z Y|| per voxel.
    """

    residuals: np.ndarray
    scale: np.ndarray

    @property
    def n_voxels(self):
        """Number of voxel columns."""
        return self.scale.size


def prepare_data(model, Y):
    """Residualise ``Y`` on the nuisance space and normalise every voxel.

    R = Y - Z (Z' Y) ; scale = ||R|| per voxel (0 if <= RESIDUAL_RTOL ||Y||) ;
    residuals = R / scale (0 where scale is 0)

    Computed in blocks of :data:`VOXEL_BLOCK` columns of ``Y`` (callers read
    chunks starting at multiples of it), so a voxel's bits do not depend on the
    chunk it was read in.
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[0] != model.n_subjects:
        raise ValueError(f"Y must be ({model.n_subjects}, n_voxels), got {Y.shape}")
    Z = model.nuisance
    # column-major: a block of voxel columns is contiguous, as matrix products need
    residuals = np.empty(Y.shape, order="F")
    scale = np.empty(Y.shape[1])
    for lo in range(0, Y.shape[1], VOXEL_BLOCK):
        cols = slice(lo, lo + VOXEL_BLOCK)
        R = Y[:, cols]
        if Z.shape[1]:  # R = Y - Z (Z' Y), written over the fit's array
            fit = Z @ (Z.T @ R)
            R = np.subtract(R, fit, out=fit)
        norm = np.sqrt(np.einsum("ij,ij->j", R, R))
        # residuals at rounding level of the data (a voxel the nuisance fits exactly) are 0
        norm[norm <= RESIDUAL_RTOL * np.sqrt(np.einsum("ij,ij->j", Y[:, cols], Y[:, cols]))] = 0
        scale[cols] = norm
        # 0 where norm is 0; divided into place: no block-sized temporary
        np.divide(R, np.where(norm > 0, norm, np.inf), out=residuals[:, cols])
    return PreparedData(residuals=residuals, scale=scale)


def pattern_statistics(model, weights, residuals, scale):
    """t or F of every pattern at every voxel column (plain numpy).

    weights : (rank, n_patterns, n) = G' [U_x, U_Z] (see
    :func:`~.plans.pattern_weights`); P_k = U_k' G R from one matrix product.

    t = P_0 / sqrt(max(1 - sum_k P_k^2, TINY) / dof) ;
    F = (sum_{k<q} P_k^2 / q) / (max(1 - sum_k P_k^2, TINY) / dof)

    Voxels with ``scale == 0`` (no residual variation) get 0. The reference of
    the numba :func:`~.projections.projection_pass`, which the chunks use.

    Returns
    -------
    ndarray (n_patterns, n_voxels)
    """
    rank, n_pat, n = weights.shape
    projections = (np.ascontiguousarray(weights).reshape(rank * n_pat, n) @ residuals
                   ).reshape(rank, n_pat, -1)
    q = model.q
    first = projections[0]
    explained = first * first
    for projection in projections[1:q]:
        explained += projection * projection
    rss = 1.0 - explained
    for projection in projections[q:]:
        rss -= projection * projection
    np.maximum(rss, glm.TINY, out=rss)
    rss /= model.dof
    if q == 1:
        value = first / np.sqrt(rss)
    else:
        value = explained
        value /= q
        value /= rss
    value[:, scale == 0] = 0.0
    return value


def score_to_t(score, dof):
    """t from the normalised score rho = u' G R of a model without nuisance.

    t = rho sqrt(dof / (1 - rho^2)), increasing in rho (computed with |rho| so
    that -rho gives exactly -t)
    """
    score = np.asarray(score, dtype=float)
    magnitude = np.abs(score)
    t = magnitude * np.sqrt(dof / np.maximum(1.0 - magnitude * magnitude, glm.TINY))
    return np.where(score < 0, -t, t)


def spatial_map(model, values):
    """The map clusters and TFCE are formed on: t, or the z of F.

    For F only the positive side is used: z = isf(sf_F(F)) where F is above its
    median (p < 0.5), and 0 elsewhere (where z <= 0, which no positive-side
    cluster or TFCE level includes).
    """
    from scipy import stats  # (here: planning a permutation test needs none of it)

    if model.statistic == "t":
        return values
    q, dof = model.q, model.dof
    z = np.zeros(values.shape)
    upper = values > stats.f.isf(0.5, q, dof)
    z[upper] = glm.f_to_z(values[upper], q, dof)
    return np.maximum(z, 0.0)


def cluster_forming_threshold(model, p, tail="two-sided"):
    """Cluster-forming threshold on the :func:`spatial_map` at uncorrected ``p``.

    t: isf(p / 2, dof) two-sided, isf(p, dof) one-sided (as nilearn) ;
    F: z > isf_normal(p) (positive side)
    """
    return spatial.cluster_forming_threshold(p, model.dof, tail, model.statistic)
