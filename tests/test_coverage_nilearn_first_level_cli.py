"""The issue's case: nilearn's FirstLevelModel fitted on simulated runs, each subject with
its own brain mask, written by save_glm_to_bids (0 in effect and variance outside the
mask), fed to `run --bids-dir --estimation mixed`. It runs; the count map is the number
of subject masks covering each voxel; the effect and its variance, at a voxel every mask
covers and at one some masks miss, are the REML/GLS reference of tests/mixed_reference.py
on the subjects present there."""

import inspect
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mixed_reference import reference_reml_sigma2
from test_coverage_estimation import explicit_gls

from nipype_secondlevel.cli import main

SHAPE, N, SCANS, TR = (6, 6, 5), 6, 40, 2.0


def subject_masks():
    masks = np.ones((N, *SHAPE), dtype=bool)
    masks[1, :2] = False  # a smaller field of view
    masks[2, :, :, 0] = False  # the lowest slice cut
    masks[4, 4:, 4:] = False  # a dropout
    masks[5, :2, :, 4] = False
    return masks


class _NoReport:
    """nilearn's HTML report of a first level, not drawn (our run reads only its maps)."""

    def save_as_html(self, path):
        path.write_text("")


def _no_report(generate_report):
    """``generate_report`` (its signature, which save_glm_to_bids reads) drawing nothing."""

    def no_report(**kwargs):
        return _NoReport()

    no_report.__signature__ = inspect.signature(generate_report)
    return no_report


@pytest.fixture(scope="module")
def first_levels(tmp_path_factory):
    """Six subjects' first levels as nilearn's save_glm_to_bids writes them: its maps,
    tables and sidecars; its figures and HTML report (6 s of each subject's 6.3 s, which
    the group run never reads) left out."""
    import nilearn._utils.plotting
    from nilearn.glm import save_glm_to_bids
    from nilearn.glm.first_level import FirstLevelModel, make_first_level_design_matrix

    folder = tmp_path_factory.mktemp("nilearn_first_levels")
    rng = np.random.default_rng(5)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    onsets = np.arange(0.0, SCANS * TR - 10, 10.0)
    events = pd.DataFrame({"onset": onsets, "duration": 5.0,
                           "trial_type": np.where(np.arange(onsets.size) % 2, "houses",
                                                  "faces")})
    regressors = make_first_level_design_matrix(np.arange(SCANS) * TR, events,
                                                hrf_model="spm", drift_model=None)
    masks = subject_masks()
    for s, mask in enumerate(masks):
        effect = rng.normal(1.0, 0.7, SHAPE)  # faces' effect varies between subjects
        bold = (100 + effect[..., None] * regressors["faces"].to_numpy()
                + rng.normal(0, 1.0 + 0.2 * s, (*SHAPE, SCANS)))
        model = FirstLevelModel(t_r=TR, hrf_model="spm", drift_model=None,
                                mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine),
                                minimize_memory=False)
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            warnings.simplefilter("ignore")
            patch.setattr(model, "generate_report", _no_report(model.generate_report))
            for figures in ("design", "contrast"):  # (drawn if nilearn renames them)
                patch.setattr(nilearn._utils.plotting, f"generate_{figures}_matrices_figures",
                              lambda *args, **kwargs: None, raising=False)
            model.fit(nib.Nifti1Image(bold.astype(np.float32), affine), events=events)
            save_glm_to_bids(model, {"faces": "faces"}, out_dir=folder / "deriv",
                             prefix=f"sub-{s:02d}_task-test")
    out = folder / "out"
    assert main(["run", "--bids-dir", str(folder / "deriv"), "--bids-contrast", "faces",
                 "--estimation", "mixed", "--out-dir", str(out),
                 "--work-dir", str(folder / "work"), "--atlas", "none", "--quiet",
                 "--plugin", "Linear"]) == 0
    return folder / "deriv", out, masks


def statmap(path):
    return nib.load(path).get_fdata()


def test_nilearn_first_levels_run_with_mixed_effects_per_voxel(first_levels):
    deriv, out, masks = first_levels
    inside = statmap(out / "desc-group_mask.nii.gz") > 0
    count = statmap(out / "stat-n_desc-coverage_statmap.nii.gz")
    np.testing.assert_array_equal(count, np.where(inside, masks.sum(axis=0), 0))
    assert inside.sum() >= 170 and count[inside].min() == N - 2  # nilearn's mask, 4 or more
    effects = np.stack([statmap(next(deriv.glob(f"sub-{s:02d}/*_stat-effect_statmap.nii.gz")))
                        for s in range(N)])
    variances = np.stack([statmap(next(deriv.glob(
        f"sub-{s:02d}/*_stat-variance_statmap.nii.gz"))) for s in range(N)])
    assert np.all(effects[~masks] == 0) and np.all(variances[~masks] == 0)  # nilearn's way
    between = statmap(out / "desc-mixed_betweenSubjectVariance.nii.gz")
    maps = {stat: statmap(out / f"contrast-intercept_stat-{stat}_statmap.nii.gz")
            for stat in ("effect", "variance", "t")}
    interior = 0
    for voxel in [(3, 3, 2), (0, 2, 4), (5, 5, 0)]:  # every mask, then 4 and 4 subjects
        present = masks[(slice(None), *voxel)]
        assert inside[voxel]
        assert present.sum() == (N if voxel == (3, 3, 2) else N - 2)
        y, v = effects[(present, *voxel)], variances[(present, *voxel)]
        X = np.ones((y.size, 1))
        s2, _, upper = reference_reml_sigma2(X, y, v)
        assert between[voxel] == pytest.approx(s2, rel=1e-4, abs=1e-6 * upper)
        interior += s2 > 0
        reference = explicit_gls(X, y, v, s2, np.ones(1))
        for stat, value in maps.items():
            assert value[voxel] == pytest.approx(reference[stat], rel=1e-4), stat
    assert interior >= 2  # REML inside its bounds, not at 0
