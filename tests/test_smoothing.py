"""Group-level smoothing: equal to nilearn's SecondLevelModel(smoothing_fwhm=...)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.interfaces.smoothing import Smooth

FWHM = 8.0


def test_smoothed_one_sample_analysis_equals_nilearn(tmp_path, simulated):
    """Mask of the unsmoothed maps, smoothed maps, OLS, contrast: nilearn's z map."""
    from nilearn.glm.second_level import SecondLevelModel

    table = pd.read_csv(simulated.inputs_table, sep="\t")
    paths = list(table.loc[table["condition"] == "vertical", "path"])
    design = pd.DataFrame({"intercept": np.ones(len(paths))})
    design_file = tmp_path / "design.tsv"
    design.to_csv(design_file, sep="\t", index=False)
    mask = run_in(tmp_path / "mask", ifc.GroupMask(in_files=paths))
    smooth = run_in(tmp_path / "smooth", Smooth(in_files=paths, fwhm=FWHM))
    estimate = run_in(tmp_path / "estimate", ifc.EstimateOLS(
        in_files=smooth.out_files, design_matrix=str(design_file), mask_file=mask.mask_file))
    contrast = run_in(tmp_path / "contrast", ifc.Contrast(
        beta=estimate.beta, residual_variance=estimate.residual_variance, dof=estimate.dof,
        design_matrix=str(design_file), mask_file=mask.mask_file, weights=[[1.0]],
        contrast_name="intercept"))
    model = SecondLevelModel(smoothing_fwhm=FWHM).fit(paths, design_matrix=design)
    in_mask = model.masker_.mask_img_.get_fdata() > 0
    np.testing.assert_array_equal(nib.load(mask.mask_file).get_fdata() > 0, in_mask)
    expected = model.compute_contrast("intercept", output_type="z_score").get_fdata()[in_mask]
    ours = nib.load(contrast.z_map).get_fdata()[in_mask]
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    # Smoothing changed the answer: the unsmoothed z map is far from it.
    plain = SecondLevelModel().fit(paths, design_matrix=design)
    unsmoothed = plain.compute_contrast("intercept", output_type="z_score").get_fdata()[in_mask]
    assert np.abs(unsmoothed - expected).max() > 1.0
    assert [Path(f).name for f in smooth.out_files][:2] == [
        f"0000_{Path(paths[0]).name}", f"0001_{Path(paths[1]).name}"]
    meta = json.loads(Path(smooth.out_files[0].replace(".nii.gz", ".json")).read_text())
    assert meta["SmoothingFWHM"] == FWHM and meta["Sources"] == [Path(paths[0]).name]


def test_variance_maps_smoothed_bound_the_smoothed_effect_variance(tmp_path):
    """Monte Carlo: the variance of smoothed first-level noise never exceeds the smoothed
    variance map, whether the noise is spatially independent or correlated."""
    from nilearn.image import smooth_img

    rng = np.random.default_rng(0)
    shape, affine, n_draws = (14, 14, 14), np.diag([2.0, 2.0, 2.0, 1.0]), 2000
    sd = rng.uniform(0.5, 3.0, shape)
    variance = nib.Nifti1Image(sd ** 2, affine)
    effect = nib.Nifti1Image(rng.normal(size=shape), affine)
    nib.save(variance, tmp_path / "variance.nii.gz")
    nib.save(effect, tmp_path / "effect.nii.gz")
    out = run_in(tmp_path / "smooth", Smooth(
        in_files=[str(tmp_path / "effect.nii.gz")], fwhm=6.0,
        variance_files=[str(tmp_path / "variance.nii.gz")]))
    bound = nib.load(out.variance_files[0]).get_fdata()
    np.testing.assert_allclose(bound, smooth_img(variance, 6.0).get_fdata())
    white = rng.normal(size=(*shape, n_draws))
    correlated = smooth_img(nib.Nifti1Image(white, affine), 8.0).get_fdata()
    correlated /= correlated.std(axis=-1, keepdims=True)  # unit variance at every voxel
    ratios = []
    for unit in (white, correlated):
        noise = nib.Nifti1Image(unit * sd[..., None], affine)
        empirical = smooth_img(noise, 6.0).get_fdata().var(axis=-1)
        assert np.all(empirical <= bound * (1 + 4 * np.sqrt(2 / n_draws)))
        ratios.append(np.median(empirical / bound))
    # How conservative: very for independent errors (sum w^2 of the kernel), much less
    # for errors as smooth as first-level residuals are.
    assert ratios[0] < 0.05 and ratios[1] > 0.3


def test_variance_maps_must_match_the_effect_maps(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4)), np.eye(4))
    nib.save(img, tmp_path / "a.nii.gz")
    with pytest.raises(Exception, match="2 variance maps for 1 effect maps"):
        run_in(tmp_path / "s", Smooth(in_files=[str(tmp_path / "a.nii.gz")], fwhm=4.0,
                                      variance_files=[str(tmp_path / "a.nii.gz")] * 2))
