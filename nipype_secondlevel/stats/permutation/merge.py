"""Merge chunk null distributions into p values; the whole test in one call.

p values count the identity: p = #{i < n_perm : null_i >= observed} / n_perm,
the exact permutation p value for an exhaustive plan and never below
1 / n_perm. Values within a relative :data:`~.chunks.TIE_RTOL` below the
observed one count as ties (>=), so that rounding of mathematically equal
statistics (e.g. +t and -t of complementary sign patterns) changes no p value.
"""

from dataclasses import dataclass, field

import numpy as np

from ...spec import DEFAULTS
from .accel import accelerated_fwer, check_method
from .chunks import (
    PermutationOptions,
    VoxelColumns,
    null_chunk,
    observed_maps,
    tail_statistic,
    tie_threshold,
)
from .model import linear_model
from .plans import chunk_bounds, plan_permutations
from .repeats import fill_copies


@dataclass
class PermutationResult:
    """p values of a permutation test, as -log10 p maps (n_voxels,).

    Attributes
    ----------
    n_perm : int
        Patterns used, identity included (p >= 1 / n_perm).
    statistic : ndarray
        Observed t or F map.
    logp_uncorrected : ndarray or None
        None when the chunks were computed with ``uncorrected=False``.
    logp_max : ndarray
        FWER-corrected by the distribution of the max statistic (max-T, max-F).
    logp_cluster_size, logp_cluster_mass : ndarray or None
        Cluster-wise FWER by max cluster size / mass (0 outside clusters).
    logp_tfce : ndarray or None
    null_max, null_cluster_size, null_cluster_mass, null_tfce : ndarray (n_perm,) or None
        Null distributions of the maxima, in permutation-index order.
    accel : {"none", "tail", "gamma"}
        How the FWER p values were obtained (see :mod:`.accel`).
    fits : dict
        With an acceleration: its record (method, fit, p values refined) by
        field (``logp_max``, ``logp_cluster_size``...), for the sidecars.
    """

    n_perm: int
    statistic: np.ndarray
    logp_uncorrected: np.ndarray | None
    logp_max: np.ndarray
    null_max: np.ndarray
    logp_cluster_size: np.ndarray | None = None
    logp_cluster_mass: np.ndarray | None = None
    logp_tfce: np.ndarray | None = None
    null_cluster_size: np.ndarray | None = None
    null_cluster_mass: np.ndarray | None = None
    null_tfce: np.ndarray | None = None
    accel: str = DEFAULTS["accel"]
    fits: dict = field(default_factory=dict)


def fwer_pvalues(observed, null_max):
    """Family-wise p values against the null distribution of the maximum.

    p(v) = #{i : null_max_i >= observed(v) (1 - TIE_RTOL)} / n_perm

    Parameters
    ----------
    observed : array (n_voxels,)
        Tail statistic (large is significant, >= 0 for the statistics here).
    null_max : array (n_perm,)
        Maximum of the same statistic in each pattern, identity included.
    """
    null = np.sort(np.asarray(null_max, dtype=float))
    below = np.searchsorted(null, tie_threshold(np.asarray(observed, dtype=float)),
                            side="left")
    return (null.size - below) / null.size


def neg_log10(p):
    """-log10 p (0.0 rather than -0.0 for p = 1)."""
    return -np.log10(p) + 0.0


def _gather(chunks, name):
    """A null distribution of every pattern, with the copies of repeated patterns filled
    in (see :mod:`.repeats`)."""
    parts = [getattr(c, name) for c in chunks]
    if any(p is None for p in parts):
        return None
    copies = [c.copies for c in chunks if c.copies is not None]
    return fill_copies(np.concatenate(parts),
                       np.concatenate(copies) if copies else None)


def _fwer_logp(values, null, accel, fits, name, inside=None):
    """-log10 FWER p of ``values`` (at the voxels ``inside``, 0 elsewhere), by the
    permutations or their acceleration (whose record goes to ``fits[name]``)."""
    inside = np.ones(values.shape, dtype=bool) if inside is None else inside
    p = fwer_pvalues(values[inside], null)
    if accel != "none":
        p, fits[name] = accelerated_fwer(values[inside], null, accel, p)
    logp = np.zeros(values.shape)
    logp[inside] = neg_log10(p)
    return logp


def merge_null_chunks(observed, chunks, options=None, accel=DEFAULTS["accel"]):
    """Combine chunk null distributions into -log10 p maps.

    p_uncorrected(v) = sum over chunks of exceedances(v) / n_perm ;
    p_FWER(v) = #{i : max_i >= stat(v)} / n_perm (max statistic, cluster, TFCE),
    or with ``accel`` the p of a distribution fitted to the null of the maximum
    (:mod:`.accel`; the uncorrected p values are the permutations').

    Parameters
    ----------
    observed : ObservedMaps
    chunks : sequence of NullChunk
        Together covering ``0..n_perm-1`` exactly once, in any order.
    options : PermutationOptions or None
        The options the chunks and the observed maps were computed with.
    accel : {"none", "tail", "gamma"}

    Returns
    -------
    PermutationResult
    """
    options = options or PermutationOptions()
    check_method(accel)
    chunks = sorted(chunks, key=lambda c: c.start)
    if not chunks:
        raise ValueError("no chunks to merge")
    position = 0
    for chunk in chunks:
        if chunk.start != position:
            raise ValueError(f"chunks do not tile the permutations: expected start "
                             f"{position}, got {chunk.start}")
        position = chunk.stop
    n_perm = position
    logp_uncorrected = None
    if all(c.exceedances is not None for c in chunks):
        logp_uncorrected = neg_log10(np.sum([c.exceedances for c in chunks], axis=0) / n_perm)
    null_max = _gather(chunks, "max_statistic")
    stat = tail_statistic(observed.statistic, options.tail)
    fits = {}
    result = PermutationResult(n_perm=n_perm, statistic=observed.statistic,
                               logp_uncorrected=logp_uncorrected,
                               logp_max=_fwer_logp(stat, null_max, accel, fits, "logp_max"),
                               null_max=null_max, accel=accel, fits=fits)
    if options.cluster_threshold is not None:
        result.null_cluster_size = _gather(chunks, "max_cluster_size")
        result.null_cluster_mass = _gather(chunks, "max_cluster_mass")
        inside = observed.cluster_size > 0
        result.logp_cluster_size = _fwer_logp(observed.cluster_size, result.null_cluster_size,
                                              accel, fits, "logp_cluster_size", inside)
        result.logp_cluster_mass = _fwer_logp(observed.cluster_mass, result.null_cluster_mass,
                                              accel, fits, "logp_cluster_mass", inside)
    if options.tfce:
        result.null_tfce = _gather(chunks, "max_tfce")
        magnitude = np.abs(observed.tfce)
        result.logp_tfce = _fwer_logp(magnitude, result.null_tfce, accel, fits, "logp_tfce",
                                      magnitude > 0)
    return result


def permutation_test(Y, X=None, contrast=None, mask=None, n_perm=DEFAULTS["n_perm"],
                     seed=DEFAULTS["perm_seed"], scheme="sign-flip", blocks=None,
                     n_chunks=DEFAULTS["n_chunks"], options=None, mem_gb=DEFAULTS["mem_gb"],
                     accel=DEFAULTS["accel"]):
    """Whole permutation test in one call (plan, chunks, observed maps, merge).

    Parameters
    ----------
    Y : array (n, n_voxels) or VoxelColumns
    X, contrast : see :func:`~.model.linear_model` (None: one-sample test)
    mask : array of bool, 3D, or None
    n_perm, seed, scheme, blocks : see :func:`~.plans.plan_permutations`
    n_chunks : int
        Number of chunks (the result does not depend on it).
    options : PermutationOptions or None
    mem_gb : float
        Memory budget of the data held at a time (the result does not depend on it).
    accel : {"none", "tail", "gamma"}
        FWER p values from the permutations or a fit to their maxima (:mod:`.accel`).

    Returns
    -------
    PermutationResult
    """
    options = options or PermutationOptions()
    columns = Y if isinstance(Y, VoxelColumns) else VoxelColumns.from_array(Y)
    model = linear_model(X, contrast, n_subjects=columns.n_rows)
    plan = plan_permutations(columns.n_rows, n_perm, scheme, seed, blocks, model.X)
    chunks = [null_chunk(model, columns, plan, a, b, mask, options, mem_gb)
              for a, b in chunk_bounds(plan.n_perm, n_chunks)]
    observed = observed_maps(model, columns, plan, mask, options, mem_gb)
    return merge_null_chunks(observed, chunks, options, accel)
