"""Mixed effects in bounded memory: the estimate reads the masked data in voxel chunks set
by --mem-gb, gives the same bits whatever the chunks, and equals a per-voxel brute force."""

import json
import re
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from group_data import make_group_table
from mixed_reference import reference_gls, reference_reml_sigma2

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.cli import main
from nipype_secondlevel.io.masked_data import VOXEL_BLOCK
from nipype_secondlevel.io.progress import INTERVAL_ENV
from nipype_secondlevel.stats.mixed_effects import block_size, fit_mixed_effects

#: 22^3 = 10,648 voxels inside: three chunks at the smallest budget.
SHAPE = (24, 24, 24)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_group_table(tmp_path_factory.mktemp("mixed_chunks") / "data", n_subjects=8,
                            conditions=("a",), variances=True, shape=SHAPE)


@pytest.fixture(scope="module")
def masked(table, tmp_path_factory):
    """Intercept and centred age; the mask; the masked effects and variances."""
    base = tmp_path_factory.mktemp("masked")
    rows = pd.read_csv(table, sep="\t")
    paths = [str(table.parent / p) for p in rows["path"]]
    variance_paths = [str(table.parent / p) for p in rows["variance_path"]]
    X = np.column_stack([np.ones(len(rows)), rows["age"] - rows["age"].mean()])
    design = base / "design.tsv"
    pd.DataFrame(X, columns=["intercept", "age"]).to_csv(design, sep="\t", index=False)
    mask = run_in(base / "mask", ifc.GroupMask(in_files=paths, strategy="coverage")).mask_file
    data = run_in(base / "data", ifc.MaskedData(in_files=paths, mask_file=mask))
    variances = run_in(base / "variances", ifc.MaskedData(in_files=variance_paths,
                                                          mask_file=mask, positive=True))
    return SimpleNamespace(X=X, design=str(design), mask=mask, paths=paths,
                           variance_paths=variance_paths, data_file=data.data_file,
                           variance_file=variances.data_file)


def estimate(folder, masked, mem_gb):
    return run_in(folder, ifc.EstimateMixedEffects(
        data_file=masked.data_file, variance_data_file=masked.variance_file,
        design_matrix=masked.design, mask_file=masked.mask, mem_gb=mem_gb))


def outputs(result, mask):
    """Every array the estimate wrote, the maps at the mask voxels."""
    arrays = {name: nib.load(getattr(result, name)).get_fdata()[mask]
              for name in ("beta", "between_subject_variance")}
    arrays["cov_beta"] = np.load(result.cov_beta)
    with np.load(result.kenward_roger) as pieces:
        arrays.update(pieces)
    return arrays


@pytest.fixture(scope="module")
def small_and_large(masked, tmp_path_factory):
    base = tmp_path_factory.mktemp("estimates")
    return estimate(base / "small", masked, 1e-4), estimate(base / "large", masked, 8.0)


def test_mem_gb_changes_the_chunks_not_the_bits(masked, small_and_large):
    mask = nib.load(masked.mask).get_fdata() > 0
    assert mask.sum() > 2 * VOXEL_BLOCK  # so that the smallest budget read three chunks
    small, large = (outputs(r, mask) for r in small_and_large)
    assert small.keys() == large.keys() == {
        "beta", "between_subject_variance", "cov_beta", "cov_beta_adjusted",
        "cov_beta_derivative", "sigma2_variance"}
    for name in small:
        np.testing.assert_array_equal(small[name], large[name], err_msg=name)
    # The same bits as one fit of all voxels held in memory.
    whole = fit_mixed_effects(masked.X, np.load(masked.data_file).astype(float),
                              np.load(masked.variance_file).astype(float))
    np.testing.assert_array_equal(small["beta"], whole.beta.T)
    np.testing.assert_array_equal(small["cov_beta_adjusted"], whole.cov_beta_adjusted)
    # mem_gb is not in the node's hash: changing it reuses the cache.
    one, two = (ifc.EstimateMixedEffects(mem_gb=g) for g in (1.0, 2.0))
    assert one.inputs.get_hashval()[1] == two.inputs.get_hashval()[1]


def test_chunked_estimate_equals_a_brute_force_fit_per_voxel(masked, small_and_large):
    """Voxels at the ends of every chunk and a few others, from the maps read with nibabel:
    REML by scalar maximisation, GLS and var(s) with explicit matrices."""
    mask = nib.load(masked.mask).get_fdata() > 0
    n_voxels = int(mask.sum())
    ours = outputs(small_and_large[0], mask)
    Y = np.stack([nib.load(p).get_fdata()[mask] for p in masked.paths])
    V = np.stack([nib.load(p).get_fdata()[mask] for p in masked.variance_paths])
    rng = np.random.default_rng(0)
    ends = [0, VOXEL_BLOCK - 1, VOXEL_BLOCK, 2 * VOXEL_BLOCK - 1, 2 * VOXEL_BLOCK, n_voxels - 1]
    n_interior = 0
    for v in [*ends, *rng.choice(n_voxels, 6, replace=False)]:
        y, var = Y[:, v], V[:, v]
        s = ours["between_subject_variance"][v]
        ref_s, _, upper = reference_reml_sigma2(masked.X, y, var)
        np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-7 * upper)
        n_interior += ref_s > 0
        beta, cov, var_s = reference_gls(masked.X, y, var, s)
        np.testing.assert_allclose(ours["beta"][v], beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours["cov_beta"][:, :, v], cov, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(ours["sigma2_variance"][v], var_s, rtol=1e-9)
    assert n_interior >= 6


def test_a_bad_variance_is_counted_over_every_chunk(masked, tmp_path):
    variances = np.load(masked.variance_file)
    # in the first and third chunks (a NaN is a missing value, not a bad one)
    variances[3, [10, 2 * VOXEL_BLOCK + 5, 7]] = [-1.0, np.inf, np.nan]
    bad = tmp_path / "variances.npy"
    np.save(bad, variances)
    with pytest.raises(ValueError, match=r"variance map of row 4: has a variance of 0 or less, "
                       r"or infinite, at 2 voxel\(s\) of the analysis mask where its effect "
                       r"is present \(first: -1 at voxel"):
        run_in(tmp_path / "estimate", ifc.EstimateMixedEffects(
            data_file=masked.data_file, variance_data_file=str(bad), design_matrix=masked.design,
            mask_file=masked.mask, mem_gb=1e-4))


def test_run_mixed_gives_the_same_maps_with_a_small_mem_gb(tmp_path, table, monkeypatch, capfd):
    options = ["--inputs", str(table), "--design", "two-sample", "--conditions", "a",
               "--covariates", "age", "--estimation", "mixed",
               "--contrast", "patients - controls", "--contrast", "groups=patients - controls; age",
               "--mask-strategy", "coverage"]
    monkeypatch.setenv(INTERVAL_ENV, "0")  # a progress line after every block of the fit

    def run(name, mem_gb, *quiet):
        assert main(["run", *options, "--mem-gb", str(mem_gb), "--out-dir", str(tmp_path / name),
                     "--work-dir", str(tmp_path / f"work_{name}"), *quiet]) == 0
        return {p.name: p for p in (tmp_path / name).glob("*.nii.gz")}

    small = run("small", 0.0001, "--quiet")
    assert capfd.readouterr().err == ""
    # All voxels in one chunk: the fit reports its blocks of voxels, as the other progress
    large = run("large", 8)
    n_voxels = int((nib.load(next(tmp_path.glob("work_large/**/mask.nii.gz"))).get_fdata()
                    > 0).sum())
    lines = [line for line in capfd.readouterr().err.splitlines()
             if line.startswith("estimate: ")]
    assert len(lines) == -(-n_voxels // block_size(8)) - 1, lines
    assert all(re.fullmatch(rf"estimate: \d+% \([\d,]+ of {n_voxels:,} voxels\), \d+ s left",
                            line) for line in lines), lines
    assert small.keys() == large.keys()
    assert {"contrast-patientsMinusControls_stat-dof_statmap.nii.gz",
            "contrast-groups_stat-F_statmap.nii.gz",
            "desc-mixed_betweenSubjectVariance.nii.gz"} <= small.keys()
    for name in small:
        np.testing.assert_array_equal(nib.load(small[name]).get_fdata(),
                                      nib.load(large[name]).get_fdata(), err_msg=name)
        sidecar = small[name].with_name(name.replace(".nii.gz", ".json"))
        assert json.loads(sidecar.read_text())
    # Another --mem-gb on the same work folder: the estimate comes from the cache.
    result = tmp_path / "work_small/group_wf/group_analysis_wf/estimate/result_estimate.pklz"
    stamp = result.stat().st_mtime_ns
    run("small", 4, "--quiet")
    assert result.stat().st_mtime_ns == stamp
