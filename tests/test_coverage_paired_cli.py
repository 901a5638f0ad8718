"""Paired designs with a subject's map missing at some voxels, through the command line:
the subject's pair drops from the test there (both rows). The t map equals statsmodels'
OLS on the paired design's rows of the complete pairs, the count map counts them, and the
exhaustive sign flips equal a brute-force enumeration of the complete pairs' differences
(each voxel on the z scale of its own dof, max-T over voxels)."""

import itertools

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from nipype_secondlevel.cli import main

SHAPE, N = (4, 4, 3), 6
CONDITIONS = ("faces", "houses")


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """Maps of 6 subjects x 2 conditions with variances; missing values written the
    first-level ways (NaN; 0 in effect and variance), and the run's results folder."""
    folder = tmp_path_factory.mktemp("coverage_paired")
    rng = np.random.default_rng(11)
    n_voxels = int(np.prod(SHAPE))
    Y = rng.normal(0.0, 1.0, (N, 2, n_voxels)) + 0.5 * rng.normal(size=(N, 1, n_voxels))
    Y[:, 0] += 0.4  # faces above houses
    V = rng.uniform(0.5, 1.5, Y.shape)
    present = np.ones(Y.shape, dtype=bool)
    present[0, 0, :12] = False  # subject 0's faces map: a dropout (NaN)
    present[2, 1, 20:30] = False  # subject 2's houses map: 0 in effect and variance
    present[4, :, 40:] = False  # subject 4: neither map (a smaller field of view)
    present[1, 0, 30:36] = present[3, 1, 30:36] = False  # four pairs left
    present[5, 0, 34:36] = False  # three pairs left: not analysed with --min-subjects 4
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rows = []
    for s, (c, condition) in itertools.product(range(N), enumerate(CONDITIONS)):
        gone = ~present[s, c]
        fill = np.nan if (s, c) != (2, 1) else 0.0
        names = {}
        for kind, values in (("effect", Y[s, c]), ("variance", V[s, c])):
            data = np.where(gone, fill, values).reshape(SHAPE).astype(np.float32)
            names[kind] = f"sub-{s}_{condition}_{kind}.nii.gz"
            nib.save(nib.Nifti1Image(data, affine), folder / names[kind])
        rows.append({"subject": f"s{s}", "condition": condition, "path": names["effect"],
                     "variance_path": names["variance"]})
    pd.DataFrame(rows).to_csv(folder / "inputs.tsv", sep="\t", index=False)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine), folder / "all.nii.gz")
    out = folder / "out"
    with pytest.warns(UserWarning, match="2 with too few subjects"):
        assert main(["run", "--inputs", str(folder / "inputs.tsv"), "--design", "paired",
                     "--conditions", *CONDITIONS, "--out-dir", str(out),
                     "--work-dir", str(folder / "work"), "--mask", str(folder / "all.nii.gz"),
                     "--min-subjects", "4", "--correction", "maxT", "--n-perm", "1000",
                     "--atlas", "none", "--quiet", "--plugin", "Linear"]) == 0
    Y = Y.astype(np.float32).astype(float)
    return out, Y, present.all(axis=1)  # a pair is complete where both maps are present


def output(out, pattern):
    (path,) = out.glob(pattern)
    return nib.load(path).get_fdata().ravel()


def test_t_and_count_are_those_of_the_complete_pairs(paired):
    out, Y, complete = paired
    count = output(out, "stat-n_desc-coverage_statmap.nii.gz")
    np.testing.assert_array_equal(count, complete.sum(axis=0))
    t = output(out, "contrast-*_stat-t_statmap.nii.gz")
    analysed = complete.sum(axis=0) >= 4
    assert analysed.sum() == Y.shape[2] - 2
    for v in np.flatnonzero(analysed):
        subjects = np.flatnonzero(complete[:, v])
        y = Y[subjects, :, v].ravel()  # faces then houses of every subject
        X = np.column_stack([np.tile([1.0, 0.0], subjects.size),
                             np.repeat(np.eye(subjects.size), 2, axis=0)])
        fit = sm.OLS(y, X).fit()
        assert t[v] == pytest.approx(fit.tvalues[0], rel=1e-4, abs=1e-5)
    np.testing.assert_array_equal(t[~analysed], 0.0)


def test_exhaustive_sign_flips_equal_brute_force_on_complete_pairs(paired):
    out, Y, complete = paired
    kept = complete.sum(axis=0) >= 4
    d = np.where(complete, Y[:, 0] - Y[:, 1], np.nan)[:, kept]
    n = complete[:, kept].sum(axis=0)
    z = []
    for signs in itertools.product([1.0, -1.0], repeat=N):  # pattern 0: identity
        flipped = d * np.asarray(signs)[:, None]
        t = np.nanmean(flipped, axis=0) / (np.nanstd(flipped, axis=0, ddof=1) / np.sqrt(n))
        z.append(np.abs(stats.norm.isf(stats.t.sf(t, n - 1))))  # two-sided
    z = np.array(z)
    tol = 1e-9 * np.maximum(z[0], 1)
    expected = {"uncorrected": (z >= z[0] - tol).mean(axis=0),
                "maxT": (z.max(axis=1)[:, None] >= z[0] - tol).mean(axis=0)}
    for desc, p in expected.items():
        logp = output(out, f"contrast-*_stat-t_desc-{desc}_logp.nii.gz")
        np.testing.assert_allclose(10 ** -logp[kept], p, rtol=1e-5, err_msg=desc)
