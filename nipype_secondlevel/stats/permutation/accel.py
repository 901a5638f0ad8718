"""PALM's accelerations of family-wise p values: fewer permutations, the same p.

Winkler AM, Ridgway GR, Douaud G, Nichols TE, Smith SM (2016). Faster
permutation inference in brain imaging. NeuroImage 141:502-516.

Both replace the permutation p of an observed statistic against the null
distribution of the maximum (max-T, max cluster size or mass, max TFCE) by the
p of a distribution fitted to that null, so that a few hundred permutations
give p values as small as 10^4 permutations would:

``tail``
    A generalised Pareto distribution (GPD) fitted to the upper tail of the
    null (Knijnenburg et al. 2009, Bioinformatics 25:i161): the tail is the
    null values whose empirical cdf reaches q, for q = 0.751, 0.761, ...; its
    excesses y over the threshold u (midway between the last value below the
    tail and the first in it) are fitted by the method of moments of Hosking &
    Wallis (1987, Technometrics 29:339),

        k = (m^2 / s^2 - 1) / 2 ;  a = m (m^2 / s^2 + 1) / 2 ;
        P(Y > y) = (1 - k y / a)^(1/k)   (exp(-y / a) for k = 0)

    with m and s^2 the mean and variance of y (k is scipy's -c). The first q
    whose fit the Anderson-Darling test does not reject at 0.05 (the critical
    values of Choulakian & Stephens 2001, Technometrics 43:478, Table 2) is
    kept, and p = (tail size / n_perm) P(Y > observed - u) for the observed
    values above u whose permutation p is below ``p_threshold``. When no q
    passes, the permutation p values are kept (a fallback, reported).
``gamma``
    The Pearson type III (gamma) distribution with the null's mean, standard
    deviation and skewness, both unbiased as PALM's (Minas & Montana 2014;
    scipy's ``pearson3``):
    p = P(X >= observed) for every observed value.

Both fit the whole null, the identity (the unpermuted maximum) included: it is
one of the permutations, as in the permutation p, and it is PALM's default
(``-accel tail``, ``out = false``). An accepted tail fit then covers every
observed value: the observed maximum is the identity's, a tail value past the
end of a bounded fit (shape k > 0) makes the Anderson-Darling statistic
infinite, and that fit is rejected. (PALM's other choice, ``G1out``, leaves the
identity out; with an effect, the observed value then often lies past the end
of the fit, where PALM's p is 0.)

Which p each value gets, as Winkler et al. (2016) and PALM's ``palm_pareto``:
the fit's p where the permutation p is below ``p_threshold`` and the value is
above the tail's threshold u, the permutation p everywhere else, and the
permutation p at every value when no tail quantile passes the test (a
fallback, reported). Where the fitted distribution gives p = 0 (PALM's p there:
a p below the smallest double, or past the end of a gamma fit with negative
skewness), the permutation p is kept (``KeptBeyondFit``; PALM's ``palm_gamma``
puts 1 / n_perm there), so that every -log10 p stays finite and no p is smaller
than one of the two methods supports. One departure from PALM's code: the
Anderson-Darling critical values are read at the fitted shape clamped to the
table's rows, -0.5..0.9 (PALM clamps it to >= 0.5, a slip reported as PALM
issue 74). Each fit comes with a record (a dict of JSON values) for the map's
sidecar.
"""

import numpy as np
from scipy import stats

from ...spec import ACCELERATIONS

#: Permutation p values below this are refined by the tail fit (PALM's default).
TAIL_P_THRESHOLD = 0.1

#: Quantiles where the tail may start, tried in turn (Winkler et al. 2016).
TAIL_QUANTILES = np.arange(751, 1000, 10) / 1000

#: Significance level of the Anderson-Darling test of the tail's fit.
FIT_ALPHA = 0.05

#: Choulakian & Stephens (2001), Table 2 (shape and scale estimated): critical
#: values of the Anderson-Darling statistic A^2 (rows: shape k; columns: p).
AD_SHAPES = np.array([0.9, 0.5, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5])
AD_PVALUES = np.array([0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
AD_CRITICAL = np.array([
    [0.339, 0.471, 0.641, 0.771, 0.905, 1.086, 1.226, 1.559],
    [0.356, 0.499, 0.685, 0.830, 0.978, 1.180, 1.336, 1.707],
    [0.376, 0.534, 0.741, 0.903, 1.069, 1.296, 1.471, 1.893],
    [0.386, 0.550, 0.766, 0.935, 1.110, 1.348, 1.532, 1.966],
    [0.397, 0.569, 0.796, 0.974, 1.158, 1.409, 1.603, 2.064],
    [0.410, 0.591, 0.831, 1.020, 1.215, 1.481, 1.687, 2.176],
    [0.426, 0.617, 0.873, 1.074, 1.283, 1.567, 1.788, 2.314],
    [0.445, 0.649, 0.924, 1.140, 1.365, 1.672, 1.909, 2.475],
    [0.468, 0.688, 0.985, 1.221, 1.465, 1.799, 2.058, 2.674],
    [0.496, 0.735, 1.061, 1.321, 1.590, 1.958, 2.243, 2.922],
])


def check_method(method):
    """Return ``method`` if it is one of :data:`ACCELERATIONS`, else raise ValueError."""
    if method not in ACCELERATIONS:
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, got {method!r}")
    return method


def gpd_survival(y, scale, shape):
    """P(Y > y) of the GPD of Hosking & Wallis, y >= 0 (0 beyond the support)."""
    return stats.genpareto.sf(y, -shape, scale=scale)


def fit_gpd_moments(excesses):
    """(scale a, shape k) of the GPD by the method of moments (Hosking & Wallis 1987).

    k = (m^2 / s^2 - 1) / 2 ; a = m (m^2 / s^2 + 1) / 2, with m the mean and s^2
    the variance (n - 1 denominator) of the excesses.
    """
    y = np.asarray(excesses, dtype=float)
    ratio = y.mean() ** 2 / y.var(ddof=1)
    return y.mean() * (ratio + 1) / 2, (ratio - 1) / 2


def anderson_darling(cdf_values):
    """A^2 = -n - (1/n) sum_j (2j - 1) [ln u_(j) + ln(1 - u_(n+1-j))], u sorted."""
    u = np.sort(np.asarray(cdf_values, dtype=float))
    n = u.size
    j = np.arange(1, n + 1)
    with np.errstate(divide="ignore"):
        return float(-n - np.sum((2 * j - 1) * (np.log(u) + np.log1p(-u[::-1]))) / n)


def anderson_darling_pvalue(a2, shape):
    """p of the Anderson-Darling statistic of a GPD fit (Choulakian & Stephens
    2001, Table 2): the critical values at ``shape`` (clamped to the table's
    -0.5..0.9, linear between rows), then p linear in A^2 between them (and
    beyond, as PALM), clipped to [0, 1]."""
    k = min(max(float(shape), AD_SHAPES[-1]), AD_SHAPES[0])
    critical = np.array([np.interp(k, AD_SHAPES[::-1], column[::-1])
                         for column in AD_CRITICAL.T])
    if not np.isfinite(a2):
        return 0.0
    if a2 <= critical[0]:
        slope = (AD_PVALUES[1] - AD_PVALUES[0]) / (critical[1] - critical[0])
        p = AD_PVALUES[0] + slope * (a2 - critical[0])
    elif a2 >= critical[-1]:
        slope = (AD_PVALUES[-1] - AD_PVALUES[-2]) / (critical[-1] - critical[-2])
        p = AD_PVALUES[-1] + slope * (a2 - critical[-1])
    else:
        p = np.interp(a2, critical, AD_PVALUES)
    return float(min(max(p, 0.0), 1.0))


def fit_tail(null):
    """The GPD fit of the upper tail of ``null`` (see the module notes).

    Returns
    -------
    dict
        ``Accepted`` (bool) and, when a fit passed, ``Quantile``, ``Location``
        (u), ``Scale`` (a), ``Shape`` (k), ``TailSize``, ``AndersonDarlingP``;
        with ``Accepted`` False, the test's p of the last quantile tried.
    """
    null = np.sort(np.asarray(null, dtype=float))
    n = null.size
    # empirical cdf of each sorted value: the fraction of the null <= it
    cdf = np.searchsorted(null, null, side="right") / n
    record = {"Accepted": False, "AndersonDarlingP": None}
    for q in TAIL_QUANTILES[:-2]:
        first = int(np.argmax(cdf >= q))
        tail = null[first:]
        if tail.size < 3 or not cdf[first] >= q:
            break
        below = null[first - 1] if first > 0 else tail[0] - (tail[1] - tail[0])
        location = (below + tail[0]) / 2
        excesses = tail - location
        if not excesses.var(ddof=1) > 0:
            continue
        scale, shape = fit_gpd_moments(excesses)
        fit_p = anderson_darling_pvalue(
            anderson_darling(1 - gpd_survival(excesses, scale, shape)), shape)
        record["AndersonDarlingP"] = fit_p
        if fit_p > FIT_ALPHA:
            return {"Accepted": True, "Quantile": float(q), "Location": float(location),
                    "Scale": float(scale), "Shape": float(shape), "TailSize": int(tail.size),
                    "AndersonDarlingP": fit_p}
    return record


def fit_gamma(null):
    """Mean, standard deviation (n - 1) and skewness (adjusted, scipy's ``bias=False``)
    of ``null``: the moments of PALM's ``palm_moments`` for the Pearson type III fit."""
    null = np.asarray(null, dtype=float)
    spread = null.std(ddof=1) if null.size > 1 else 0.0
    return {"Mean": float(null.mean()), "StandardDeviation": float(spread),
            "Skewness": float(stats.skew(null, bias=False)) if spread > 0 else 0.0}


def accelerated_fwer(observed, null, method, permutation_p, p_threshold=TAIL_P_THRESHOLD):
    """FWER p values of ``observed`` from a distribution fitted to ``null``.

    Parameters
    ----------
    observed : array
        Tail statistic (large is significant).
    null : array (n_perm,)
        Its maximum in every pattern, the identity first (all fitted).
    method : {"none", "tail", "gamma"}
    permutation_p : array like ``observed``
        The permutation p values (kept where the fit does not apply).
    p_threshold : float
        ``tail``: only permutation p values below this are refined.

    Returns
    -------
    p : ndarray like ``observed``
    record : dict
        ``Method``, the fit (see :func:`fit_tail`, :func:`fit_gamma`),
        ``FellBack`` (no fit was used: the permutation p values), ``PValues``
        (where the p values come from: ``"fit"``, ``"fit, permutation beyond
        it"`` or ``"permutation: no accepted fit"``) and how many came from
        each source: ``Refined`` (the fit), ``KeptBeyondFit`` (the permutations,
        where the fit gives 0) and ``KeptPermutation`` (the permutations,
        elsewhere: above ``p_threshold``, below the tail, or no fit).
    """
    observed = np.asarray(observed, dtype=float)
    p = np.array(permutation_p, dtype=float)
    if check_method(method) == "none":
        return p, {"Method": "none"}
    null = np.asarray(null, dtype=float)
    if method == "tail":
        fit = fit_tail(null)
        fitted = np.zeros(observed.shape)
        use = np.zeros(observed.shape, dtype=bool)
        if fit["Accepted"]:
            use = (permutation_p < p_threshold) & (observed > fit["Location"])
            fitted[use] = fit["TailSize"] / np.size(null) * gpd_survival(
                observed[use] - fit["Location"], fit["Scale"], fit["Shape"])
    else:
        fit = fit_gamma(null)
        use = np.ones(observed.shape, dtype=bool)
        if fit["StandardDeviation"] > 0:
            fitted = stats.pearson3.sf(observed, fit["Skewness"], loc=fit["Mean"],
                                       scale=fit["StandardDeviation"])
        else:
            fitted, use = np.zeros(observed.shape), ~use
    fell_back = not fit["Accepted"] if method == "tail" else not fit["StandardDeviation"] > 0
    beyond = use & ~(fitted > 0)  # beyond the fitted support: the permutation p
    use &= ~beyond
    p[use] = fitted[use]
    source = ("permutation: no accepted fit" if fell_back else
              "fit, permutation beyond it" if beyond.any() else "fit")
    return p, {"Method": method, **fit, "FellBack": bool(fell_back), "PValues": source,
               "Refined": int(use.sum()), "KeptBeyondFit": int(beyond.sum()),
               "KeptPermutation": int(use.size - use.sum() - beyond.sum())}
