"""False-positive rate and power of OLS vs FLAME1-like mixed effects.

Not a test: prints a table. Run from the repository root:

    /work/venv/bin/python validation/mixed_effects_null_simulation.py [--voxels N]

Simulation (every voxel is an independent replication):

* 20 subjects; first-level variances ``V_iv`` log-uniform on [0.2, 4] (a
  factor 20 between subjects), drawn afresh at every voxel so that each voxel
  replicates the whole experiment; in the scenarios marked "fixed subjects"
  one draw of per-subject multipliers ``m_i`` (same range) is shared by all
  voxels, ``V_iv = m_i * exp(0.25 z_iv)``: the rates then describe that one
  configuration of subject variances, not an average over configurations;
* ``Y_iv = X_i beta + N(0, V_iv + sigma2_between)``;
* tests are one-sided (upper tail, as thresholded z maps), p = t.sf(t, n - p)
  for both OLS (``glm``) and mixed effects (``mixed_effects``, FLAME1 dof),
  plus mixed effects with the Kenward-Roger correction ("mixed-KR"), with
  nilearn-style fixed effects (dof = 100 per map) shown for the one-sample
  design as a reference that ignores the between-subject variance;
* the estimators see the true ``V``, except in the scenario marked
  "estimated V" where ``V_hat = V * chi2(nu) / nu`` with nu = 30;
* null: beta tested = 0; power: the tested effect is
  2.5 * sqrt((mean V + sigma2_between) / n).

The false-positive rate comes with a Clopper-Pearson 95% interval.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

try:
    from nipype_secondlevel.stats import glm, mixed_effects
except ImportError:  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nipype_secondlevel.stats import glm, mixed_effects

N_SUBJECTS = 20
ALPHAS = (0.05, 0.01)
CHUNK = 25_000


def simulate(rng, X, beta, n_vox, sigma2_between, estimated_v_dof=None, fixed_configuration=False):
    """Effect maps Y and the variances V the estimators are given."""
    n = X.shape[0]
    if fixed_configuration:
        multiplier = np.exp(rng.uniform(np.log(0.2), np.log(4.0), (n, 1)))
        V = multiplier * np.exp(0.25 * rng.standard_normal((n, n_vox)))
    else:
        V = np.exp(rng.uniform(np.log(0.2), np.log(4.0), (n, n_vox)))
    noise = rng.standard_normal((n, n_vox)) * np.sqrt(V + sigma2_between)
    Y = (X @ beta)[:, None] + noise
    if estimated_v_dof is not None:
        nu = estimated_v_dof
        V = V * rng.chisquare(nu, size=V.shape) / nu
    return Y, V


def one_sided_p(X, Y, V, contrast, one_sample):
    """p values (upper tail) of OLS, mixed effects and fixed effects."""
    ols = glm.fit_ols(X, Y, chunk_size=CHUNK)
    _, _, t_ols = glm.t_contrast(X, ols.beta, ols.residual_variance, contrast)
    fit = mixed_effects.fit_mixed_effects(X, Y, V)
    _, _, t_me = mixed_effects.mixed_effects_contrast(fit, contrast)
    _, _, t_kr, dof_kr = mixed_effects.mixed_effects_contrast_kenward_roger(fit, contrast)
    out = {
        "OLS": stats.t.sf(t_ols, ols.dof),
        "mixed": stats.t.sf(t_me, fit.dof),
        "mixed-KR": stats.t.sf(t_kr, dof_kr),
    }
    if one_sample:
        fe = mixed_effects.fixed_effects(Y, V)
        out["fixed"] = stats.t.sf(fe.t, min(fe.dof, mixed_effects.DOF_MAX))
    info = (fit.converged.mean(), fit.n_iter.mean(), np.mean(fit.sigma2_between))
    return out, info


def rate_with_ci(p, alpha):
    k = int(np.sum(p < alpha))
    ci = stats.binomtest(k, p.size).proportion_ci(0.95, method="exact")
    return k / p.size, ci.low, ci.high


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=200_000, help="simulated voxels per scenario")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the simulation")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    one = np.ones((N_SUBJECTS, 1))
    covariate = np.column_stack([np.ones(N_SUBJECTS), rng.standard_normal(N_SUBJECTS)])
    scenarios = [
        # label, design, contrast, sigma2_between, estimated V dof, fixed subjects
        ("one-sample, s2b=0", one, [1], 0.0, None, False),
        ("one-sample, s2b=0.25", one, [1], 0.25, None, False),
        ("one-sample, s2b=1", one, [1], 1.0, None, False),
        ("one-sample, s2b=4", one, [1], 4.0, None, False),
        ("one-sample, s2b=0.25, estimated V", one, [1], 0.25, 30, False),
        ("covariate slope, s2b=0.25", covariate, [0, 1], 0.25, None, False),
        ("one-sample, s2b=1, fixed subjects", one, [1], 1.0, None, True),
        ("covariate slope, s2b=0.25, fixed subj.", covariate, [0, 1], 0.25, None, True),
    ]
    print(
        f"{N_SUBJECTS} subjects, {args.voxels} voxels per scenario, "
        "first-level variances differ by a factor 20 across subjects "
        "(mean V ~ 1.27); one-sided tests; 95% Clopper-Pearson intervals."
    )
    start = time.time()
    print("\nFALSE-POSITIVE RATE (null data)")
    for label, X, contrast, s2b, nu, fixed in scenarios:
        Y, V = simulate(rng, X, np.zeros(X.shape[1]), args.voxels, s2b, nu, fixed)
        ps, (conv, nit, s2_mean) = one_sided_p(X, Y, V, contrast, X.shape[1] == 1)
        print(
            f"\n{label}   [mixed: converged {conv:.4%}, mean iterations "
            f"{nit:.1f}, mean sigma2_between estimate {s2_mean:.3f}]"
        )
        for alpha in ALPHAS:
            cells = []
            for name, p in ps.items():
                r, lo, hi = rate_with_ci(p, alpha)
                cells.append(f"{name:>8} {r:.4f} [{lo:.4f}, {hi:.4f}]")
            print(f"  alpha={alpha:<5} " + "   ".join(cells))

    print("\nPOWER (effect = 2.5 * sqrt((mean V + s2b) / n))")
    n_power = max(args.voxels // 4, 1000)
    mean_v = np.mean(np.exp(np.linspace(np.log(0.2), np.log(4.0), 10_001)))
    for label, X, contrast, s2b, nu, fixed in scenarios:
        size = 2.5 * np.sqrt((mean_v + s2b) / N_SUBJECTS)
        if X.shape[1] == 2:  # slope: scale by the covariate's spread
            size /= np.std(X[:, 1])
        beta = np.asarray(contrast, dtype=float) * size
        Y, V = simulate(rng, X, beta, n_power, s2b, nu, fixed)
        ps, _ = one_sided_p(X, Y, V, contrast, one_sample=False)
        print(f"  {label:<40} effect {size:.3f}")
        for alpha in ALPHAS:
            cells = [f"{name} {np.mean(p < alpha):.4f}" for name, p in ps.items()]
            print(f"    alpha={alpha:<5} " + "   ".join(cells))
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
