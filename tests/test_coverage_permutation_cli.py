"""Permutation tests with per-voxel subjects through the command line: exhaustive sign
flips against a brute-force enumeration in the test that drops each voxel's missing
subjects and compares voxels on the z scale of their own dof."""

import itertools

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nipype_secondlevel.cli import main

SHAPE, N = (4, 4, 3), 8


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coverage_perm")
    rng = np.random.default_rng(7)
    Y = rng.normal(0.3, 1.0, (N, int(np.prod(SHAPE))))
    present = np.ones_like(Y, dtype=bool)
    present[[0, 3], :12] = False  # dropout in two subjects
    present[5, 30:] = False  # a smaller field of view
    present[1:6, 40:44] = False  # three subjects left: out with --min-subjects 4
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rows = []
    for i in range(N):
        values = np.where(present[i], Y[i], np.nan).reshape(SHAPE)
        nib.save(nib.Nifti1Image(values.astype(np.float32), affine), folder / f"s{i}.nii.gz")
        rows.append({"subject": f"s{i}", "path": f"s{i}.nii.gz"})
    pd.DataFrame(rows).to_csv(folder / "inputs.tsv", sep="\t", index=False)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine), folder / "all.nii.gz")
    return folder, Y.astype(np.float32).astype(float), present


def brute_force(Y, present):
    """(uncorrected p, max-T p) of every voxel: all 2^N sign flips, each voxel's t on its
    present subjects, put on the z scale of its dof (one-sided)."""
    n = present.sum(axis=0)
    z = []
    for signs in itertools.product([1.0, -1.0], repeat=N):
        flipped = np.where(present, Y * np.asarray(signs)[:, None], np.nan)
        mean, sd = np.nanmean(flipped, axis=0), np.nanstd(flipped, axis=0, ddof=1)
        t = mean / (sd / np.sqrt(n))
        z.append(stats.norm.isf(stats.t.sf(t, n - 1)))
    z = np.array(z)  # pattern 0: identity
    tol = 1e-9 * np.maximum(np.abs(z[0]), 1)
    uncorrected = (z >= z[0] - tol).mean(axis=0)
    maxima = z.max(axis=1)
    corrected = (maxima[:, None] >= z[0] - tol).mean(axis=0)
    return uncorrected, corrected


def test_exhaustive_sign_flips_equal_brute_force_dropping_missing_subjects(maps, tmp_path):
    folder, Y, present = maps
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="fewer than 4 maps have a value"):
        assert main(["run", "--inputs", str(folder / "inputs.tsv"), "--out-dir", str(out),
                     "--work-dir", str(tmp_path / "work"), "--mask", str(folder / "all.nii.gz"),
                     "--min-subjects", "4", "--contrast", "mean=[1]", "--one-sided",
                     "--correction", "maxT", "--n-perm", "1000", "--atlas", "none",
                     "--quiet"]) == 0
    kept = present.sum(axis=0) >= 4
    uncorrected, corrected = brute_force(Y[:, kept], present[:, kept])
    for desc, expected in (("uncorrected", uncorrected), ("maxT", corrected)):
        logp = nib.load(out / f"contrast-mean_stat-t_desc-{desc}_logp.nii.gz").get_fdata()
        np.testing.assert_allclose(10 ** -logp.ravel()[kept], expected, rtol=1e-5,
                                   err_msg=desc)
    assert (~kept).sum() == 4
