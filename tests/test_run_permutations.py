"""Permutation tests through ``nipype-secondlevel run``, for every design, against
brute-force references written here in plain numpy (and nilearn's permuted_ols for
random plans).

Exhaustive plans (every sign flip, every permutation, every permutation within the
blocks) must give exactly the p values of the enumeration: p = #{patterns whose
statistic >= the observed one} / #patterns, identity included, two-sided t on |t|,
F on F; values within a relative 1e-9 of each other count as ties. Nuisance is
handled by Freedman-Lane (Winkler et al. 2014): Y* = H_Z Y + P R_Z Y, with Z the
part of the design the contrast does not test, then the full model is refitted.

Tiny data: 4 x 4 x 3 maps, every voxel in the mask (48 voxels).
"""

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from group_data import write_map
from scipy import ndimage, stats

from nipype_secondlevel.cli import main

SHAPE = (4, 4, 3)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
TIE = 1e-9


# ---------------------------------------------------------------- data and runs

def write_table(folder, n_subjects, conditions=("a",), seed=0, effect=0.8, group_effect=0.0):
    """Maps with an effect in one corner of the grid (``group_effect`` more in the patients);
    group, age and site columns."""
    rng = np.random.default_rng(seed)
    (folder / "maps").mkdir(parents=True, exist_ok=True)
    blob = np.zeros(SHAPE)
    blob[:2, :2, :] = effect
    rows = []
    ages = rng.uniform(20, 60, n_subjects).round(1)
    for s in range(n_subjects):
        for c, condition in enumerate(conditions):
            data = (rng.normal(size=SHAPE) + blob * (c == 0) + 0.02 * ages[s] * (s % 2)
                    + (blob > 0) * group_effect * (s % 2))
            name = f"maps/sub-{s:02d}_cond-{condition}.nii.gz"
            write_map(folder / name, data.astype(np.float32), AFFINE)
            rows.append({"subject": f"s{s:02d}", "condition": condition,
                         "group": "patients" if s % 2 else "controls", "age": ages[s],
                         "path": name})
    path = folder / "inputs.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def run(folder, table, *args, work="work"):
    out = folder / f"out{len(list(folder.glob('out*')))}"
    code = main(["run", "--inputs", str(table), "--mask-strategy", "coverage", "--quiet",
                 "--out-dir", str(out), "--work-dir", str(folder / work), *args])
    assert code == 0
    return out


def maps(table, rows=None):
    """(n_maps, 48) float64 values of the table's maps, in table order or ``rows``."""
    frame = pd.read_csv(table, sep="\t")
    if rows is not None:
        frame = frame.loc[rows]
    return np.stack([nib.load(table.parent / p).get_fdata().ravel() for p in frame.path])


def p_map(out, label, stat, desc):
    logp = nib.load(out / f"contrast-{label}_stat-{stat}_desc-{desc}_logp.nii.gz").get_fdata()
    return 10 ** -logp.ravel()


def sidecar(out, label, stat, desc):
    return json.loads((out / f"contrast-{label}_stat-{stat}_desc-{desc}_logp.json").read_text())


# ---------------------------------------------------------------- brute force

def statistic(Y, X, C):
    """t (one row of C) or F (several) of the OLS fit of Y (n, v) on X (n, p)."""
    C = np.atleast_2d(C)
    pinv = np.linalg.pinv(X)
    beta = pinv @ Y
    dof = X.shape[0] - np.linalg.matrix_rank(X)
    sigma2 = ((Y - X @ beta) ** 2).sum(axis=0) / dof
    unscaled = pinv @ pinv.T  # (X'X)^-1
    effect = C @ beta
    if len(C) == 1:
        return effect[0] / np.sqrt(sigma2 * (C[0] @ unscaled @ C[0]))
    middle = np.linalg.inv(C @ unscaled @ C.T)
    return np.einsum("iv,ij,jv->v", effect, middle, effect) / (len(C) * sigma2)


def null_statistics(Y, X, C, patterns, flips):
    """Freedman-Lane: the statistic of every pattern (rows of P, or signs), (n_patterns, v)."""
    C = np.atleast_2d(C)
    Z = X @ (np.eye(X.shape[1]) - np.linalg.pinv(C) @ C)
    u, s, _ = np.linalg.svd(Z, full_matrices=False)
    Z = u[:, s > 1e-10 * max(s.max(), 1.0)]
    fitted = Z @ (Z.T @ Y)
    residuals = Y - fitted
    out = []
    for pattern in patterns:
        pattern = np.asarray(pattern)
        moved = pattern[:, None] * residuals if flips else residuals[pattern]
        out.append(statistic(fitted + moved, X, C))
    return np.array(out)


def sign_flips(n):
    return list(itertools.product([1.0, -1.0], repeat=n))


def permutations(n):
    return list(itertools.permutations(range(n)))


def within_blocks(blocks):
    """Every permutation of the rows that keeps each row in its block."""
    blocks = np.asarray(blocks)
    groups = [np.flatnonzero(blocks == b) for b in dict.fromkeys(blocks)]
    patterns = []
    for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
        pattern = np.arange(len(blocks))
        for group, moved in zip(groups, choice):
            pattern[group] = moved
        patterns.append(pattern)
    return patterns


def p_values(null, kind="t"):
    """Uncorrected and max-statistic FWER p of the identity (row 0 of ``null``)."""
    null = np.abs(null) if kind == "t" else null
    observed = null[0] * (1 - TIE)
    uncorrected = (null >= observed).mean(axis=0)
    fwer = (null.max(axis=1)[:, None] >= observed).mean(axis=0)
    return uncorrected, fwer


def assert_exhaustive(out, label, null, kind="t", n_patterns=None):
    stat = "t" if kind == "t" else "F"
    uncorrected, fwer = p_values(null, kind)
    np.testing.assert_allclose(p_map(out, label, stat, "uncorrected"), uncorrected, rtol=1e-6)
    np.testing.assert_allclose(p_map(out, label, stat, "maxT" if kind == "t" else "maxF"), fwer,
                               rtol=1e-6)
    meta = sidecar(out, label, stat, "uncorrected")["Correction"]
    assert meta["NPermutations"] == (n_patterns or len(null)) and meta["Exhaustive"] is True
    assert meta["Seed"] is None
    assert len(set(np.round(uncorrected * len(null)))) > 3  # the p values differ between voxels
    return meta


# ---------------------------------------------------------------- exhaustive plans

def test_one_sample_sign_flips_and_cluster_size_equal_enumeration(tmp_path):
    table = write_table(tmp_path / "data", 8)
    out = run(tmp_path, table, "--design", "one-sample", "--correction", "cluster-size",
              "--cluster-forming-p", "0.05", "--n-perm", "256", "--n-chunks", "3")
    # chunks of equal work: a pattern and its negation are one on both tails; patterns
    # 128..255 negate 0..127 (i flips subject j iff bit j of i): 43 + 42 + 43 computed
    (test,) = json.loads((out / "plan.json").read_text())["contrasts"]
    assert test["permutations"]["chunks"] == [[0, 43], [43, 85], [85, 256]]
    Y = maps(table)
    null = null_statistics(Y, np.ones((8, 1)), [[1.0]], sign_flips(8), flips=True)
    meta = assert_exhaustive(out, "intercept", null)
    assert meta["Scheme"] == "sign-flip" and meta["Tail"] == "two-sided"
    # Cluster size: clusters of |t| above the cluster-forming t (two-sided p 0.05), each
    # sign apart, 6-connectivity; FWER p of a voxel's cluster against the largest cluster.
    threshold = stats.t.isf(0.05 / 2, 7)

    def sizes(t):
        size = np.zeros(t.size)
        for sign in (1, -1):
            labels, _ = ndimage.label((sign * t).reshape(SHAPE) > threshold)
            counts = np.bincount(labels.ravel())
            inside = labels.ravel() > 0
            size[inside] = counts[labels.ravel()[inside]]
        return size

    observed = sizes(null[0])
    largest = np.array([sizes(t).max() for t in null])
    assert observed.max() > 1
    expected = np.where(observed > 0, (largest[:, None] >= observed).mean(axis=0), 1.0)
    np.testing.assert_allclose(p_map(out, "intercept", "t", "clusterSize"), expected, rtol=1e-6)
    # The report shows the cluster-size map, captioned by its sidecar.
    significant = json.loads((out / "contrast-intercept_stat-z_desc-clusterSizecorrected_"
                                    "statmap.json").read_text())
    description = significant["Threshold"]["Description"]
    assert description.startswith("cluster-size FWE p < 0.05, 256 permutations")
    report = (out / "report.html").read_text()
    results = report[report.index('id="results"'):report.index('id="mask"')]
    assert description.replace("<", "&lt;").replace(">", "&gt;") in results
    assert "uncorrected" not in results


def test_paired_sign_flips_of_the_differences_equal_enumeration(tmp_path):
    table = write_table(tmp_path / "data", 6, conditions=("a", "b"))
    out = run(tmp_path, table, "--design", "paired", "--conditions", "a", "b",
              "--correction", "maxT", "--n-perm", "64")
    rows = pd.read_csv(table, sep="\t")
    a = maps(table, rows.index[rows.condition == "a"])
    b = maps(table, rows.index[rows.condition == "b"])
    null = null_statistics(a - b, np.ones((6, 1)), [[1.0]], sign_flips(6), flips=True)
    assert assert_exhaustive(out, "aVsB", null)["Scheme"] == "sign-flip"


def test_two_sample_t_and_f_permutations_equal_enumeration(tmp_path):
    """--n-perm 20 = C(6, 3), the distinct relabellings of two groups of 3: the test is
    exhaustive, and its p values are those of all 6! = 720 permutations."""
    table = write_table(tmp_path / "data", 6)
    out = run(tmp_path, table, "--design", "two-sample", "--correction", "maxT",
              "--n-perm", "20", "--contrast", "patients - controls",
              "--contrast", "means=patients; controls")
    rows = pd.read_csv(table, sep="\t")
    order = list(rows.index[rows.group == "controls"]) + list(rows.index[rows.group == "patients"])
    Y = maps(table, order)
    X = np.repeat(np.eye(2), 3, axis=0)  # controls, patients
    t_null = null_statistics(Y, X, [[-1.0, 1.0]], permutations(6), flips=False)
    assert assert_exhaustive(out, "patientsMinusControls", t_null,
                             n_patterns=20)["Scheme"] == "permute"
    f_null = null_statistics(Y, X, [[0.0, 1.0], [1.0, 0.0]], permutations(6), flips=False)
    assert_exhaustive(out, "means", f_null, kind="F", n_patterns=20)
    assert sidecar(out, "means", "F", "maxF")["DegreesOfFreedom"] == [2, 4]


def test_covariate_slope_permutes_and_intercept_flips(tmp_path):
    """One-sample with a covariate: the slope is tested by permutations (Freedman-Lane,
    the intercept as nuisance); the intercept, constant in the one block, by sign flips."""
    table = write_table(tmp_path / "data", 6)
    out = run(tmp_path, table, "--design", "one-sample", "--covariates", "age",
              "--contrast", "intercept", "--contrast", "age", "--correction", "maxT",
              "--n-perm", "1000")
    rows = pd.read_csv(table, sep="\t")
    X = np.column_stack([np.ones(6), rows.age - rows.age.mean()])
    Y = maps(table)
    slope = null_statistics(Y, X, [[0.0, 1.0]], permutations(6), flips=False)
    assert assert_exhaustive(out, "age", slope)["Scheme"] == "permute"
    mean = null_statistics(Y, X, [[1.0, 0.0]], sign_flips(6), flips=True)
    assert assert_exhaustive(out, "intercept", mean)["Scheme"] == "sign-flip"


def test_blocked_repeated_measures_permute_within_subjects(tmp_path):
    """Three conditions per subject in a design file; rows are permuted only within their
    subject (--exchangeability-blocks subject): 3!^3 = 216 patterns."""
    table = write_table(tmp_path / "data", 3, conditions=("c1", "c2", "c3"))
    rows = pd.read_csv(table, sep="\t")
    design = pd.DataFrame({c: (rows.condition == c).astype(float) for c in ("c1", "c2", "c3")})
    for s in ("s01", "s02"):
        design[s] = (rows.subject == s).astype(float)
    design.to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    out = run(tmp_path, table, "--design", "file", "--design-file", str(tmp_path / "design.tsv"),
              "--contrast", "c1 - c2", "--contrast", "conditions=c1 - c2; c1 - c3",
              "--exchangeability-blocks", "subject", "--correction", "maxT", "--n-perm", "500")
    X, Y = design.to_numpy(), maps(table)
    patterns = within_blocks(rows.subject)
    assert len(patterns) == 216
    t_null = null_statistics(Y, X, [[1.0, -1.0, 0, 0, 0]], patterns, flips=False)
    meta = assert_exhaustive(out, "c1MinusC2", t_null)
    assert meta["Scheme"] == "permute" and meta["ExchangeabilityBlocks"] == 3
    f_null = null_statistics(Y, X, [[1.0, -1.0, 0, 0, 0], [1.0, 0, -1.0, 0, 0]], patterns,
                             flips=False)
    assert_exhaustive(out, "conditions", f_null, kind="F")


# ---------------------------------------------------------------- random plans

def assert_agrees_with_nilearn(out, label, tested, Y, n_perm):
    from nilearn.mass_univariate import permuted_ols

    ours = p_map(out, label, "t", "maxT")
    theirs = 10 ** -permuted_ols(tested[:, None], Y, model_intercept=True, n_perm=n_perm,
                                 two_sided_test=True, random_state=0, n_jobs=1,
                                 verbose=0)["logp_max_t"][0]
    se = np.sqrt(2 * theirs * (1 - theirs) / n_perm) + 1 / n_perm
    assert np.all(np.abs(ours - theirs) <= 5 * se)
    assert ours.min() < 0.05 and ours.max() > 0.5  # a range of p values is compared
    meta = sidecar(out, label, "t", "maxT")["Correction"]
    assert meta["Exhaustive"] is False and meta["Seed"] == 3 and meta["NPermutations"] == n_perm


def test_random_two_sample_agrees_with_nilearn_and_chunks_change_nothing(tmp_path):
    """14 maps in two groups of 7: C(14, 7) = 3432 distinct relabellings, more than the
    2000 asked, so the patterns are random."""
    table = write_table(tmp_path / "data", 14, group_effect=3.0)
    options = ["--design", "two-sample", "--correction", "maxT", "--n-perm", "2000",
               "--perm-seed", "3"]
    one = run(tmp_path, table, *options, "--n-chunks", "1")
    rows = pd.read_csv(table, sep="\t")
    order = list(rows.index[rows.group == "controls"]) + list(rows.index[rows.group == "patients"])
    tested = np.repeat([0.0, 1.0], 7)
    assert_agrees_with_nilearn(one, "controlsMinusPatients", -tested, maps(table, order), 2000)
    three = run(tmp_path, table, *options, "--n-chunks", "3")
    for path in one.glob("*_logp.nii.gz"):
        np.testing.assert_array_equal(nib.load(three / path.name).get_fdata(),
                                      nib.load(path).get_fdata(), err_msg=path.name)
    assert len(list(one.glob("*_logp.nii.gz"))) >= 2


def test_random_covariate_agrees_with_nilearn(tmp_path):
    table = write_table(tmp_path / "data", 10, effect=0.0)
    rows = pd.read_csv(table, sep="\t")
    # a slope in the corner voxels
    for s, path in enumerate(rows.path):
        img = nib.load(table.parent / path)
        data = img.get_fdata()
        data[:2, :2, :] += 0.08 * (rows.age[s] - rows.age.mean())
        write_map(table.parent / path, data.astype(np.float32), AFFINE)
    out = run(tmp_path, table, "--design", "one-sample", "--covariates", "age",
              "--contrast", "age", "--correction", "maxT", "--n-perm", "2000",
              "--perm-seed", "3")
    assert_agrees_with_nilearn(out, "age", rows.age.to_numpy(), maps(table), 2000)
    assert Path(out / "contrast-age_desc-nulls_permutations.tsv").exists()
