"""Infinite voxels leave the mask on every path, NaN ones are missing values (each voxel
analysed with the maps present there); zero first-level variances beside an effect are
refused; empty maps say so."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from group_data import SHAPE, make_group_table, write_map
from scipy import stats
from test_cli import run_cli

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.cli import main
from nipype_secondlevel.io.masks import NonFiniteWarning

#: Voxels made NaN (map 2) and +inf (map 5); the effect is strong there.
NAN_VOXEL, INF_VOXEL = (4, 5, 4), (5, 6, 5)
THRESHOLDED = "contrast-intercept_stat-z_desc-thresholded_statmap.nii.gz"


@pytest.fixture(scope="module")
def bad_table(tmp_path_factory):
    """One-sample maps (mean ~7, every voxel significant), one NaN voxel in one map, one
    infinite voxel in another, and variance maps."""
    table = make_group_table(tmp_path_factory.mktemp("bad") / "data", n_subjects=10,
                             conditions=("a",), variances=True)
    rows = pd.read_csv(table, sep="\t")
    for row, path in enumerate(rows["path"]):
        data = nib.load(table.parent / path).get_fdata()
        data[data != 0] += 5.0  # every voxel of the brain significant, even with Bonferroni
        if row in (2, 5):
            data[NAN_VOXEL if row == 2 else INF_VOXEL] = np.nan if row == 2 else np.inf
        write_map(table.parent / path, data)
    return table


def run(tmp_path, table, out, *options):
    return main(["run", "--inputs", str(table), "--out-dir", str(tmp_path / out),
                 "--work-dir", str(tmp_path / "work"), "--quiet", *options])


def test_infinite_voxels_are_never_significant_nan_ones_are_missing(tmp_path, bad_table):
    """Every correction path: the infinite voxel is out of the mask and 0 in every map; the
    NaN voxel is analysed with the nine other maps (scipy's one-sample t on them)."""
    paths = {"threshold": ["--threshold", "2"],
             "fdr": ["--correction", "fdr"],
             "bonferroni": ["--correction", "bonferroni", "--alpha", "0.05"]}
    for out, options in paths.items():
        if out == "threshold":  # the command itself: the warning is one line on stderr
            result = run_cli("run", "--inputs", str(bad_table), "--out-dir", out,
                             "--work-dir", "work", "--quiet", *options, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert result.stderr.splitlines() == [(
                "nipype-secondlevel: warning: 1 voxel(s) infinite in at least one map "
                f"(e.g. {bad_table.parent / 'maps/sub-05_cond-a.nii.gz'}) were left out of the "
                "analysis mask")]
        else:  # the mask comes from the cache
            assert run(tmp_path, bad_table, out, *options) == 0, out
        folder = tmp_path / out
        mask = nib.load(folder / "desc-group_mask.nii.gz").get_fdata()
        thresholded = nib.load(folder / THRESHOLDED).get_fdata()
        z = nib.load(folder / "contrast-intercept_stat-z_statmap.nii.gz").get_fdata()
        # Without the policy both would be significant: their neighbours are.
        assert thresholded[4, 5, 5] != 0 and thresholded[5, 6, 4] != 0, out
        assert mask[INF_VOXEL] == 0 and z[INF_VOXEL] == 0 and thresholded[INF_VOXEL] == 0, out
        assert np.all(np.isfinite(z)) and mask.sum() == 8 * 10 * 8 - 1
        t = nib.load(folder / "contrast-intercept_stat-t_statmap.nii.gz").get_fdata()
        n = nib.load(folder / "stat-n_desc-coverage_statmap.nii.gz").get_fdata()
        values = [nib.load(bad_table.parent / p).get_fdata()[NAN_VOXEL]
                  for p in pd.read_csv(bad_table, sep="\t")["path"]]
        np.testing.assert_allclose(t[NAN_VOXEL], stats.ttest_1samp(
            [v for v in values if not np.isnan(v)], 0).statistic, rtol=1e-5)
        assert n[NAN_VOXEL] == 9 and n[4, 5, 5] == 10 and thresholded[NAN_VOXEL] != 0


def test_infinite_voxels_are_never_significant_with_permutations(tmp_path, bad_table):
    """max-T over 2^10 sign flips; the NaN voxel is tested with the nine other maps."""
    assert run(tmp_path, bad_table, "maxT", "--correction", "maxT", "--n-perm", "1024") == 0
    corrected = nib.load(next((tmp_path / "maxT").glob("*_desc-maxTcorrected_statmap.nii.gz")))
    data = corrected.get_fdata()
    assert data[4, 5, 5] != 0
    assert data[NAN_VOXEL] != 0 and data[INF_VOXEL] == 0


@pytest.mark.parametrize("strategy", ["nilearn", "coverage", "mni152", "file"])
def test_every_mask_strategy_leaves_infinite_voxels_out(tmp_path, bad_table, strategy):
    rows = pd.read_csv(bad_table, sep="\t")
    paths = [str(bad_table.parent / p) for p in rows["path"]]
    variances = [str(bad_table.parent / p) for p in rows["variance_path"]]
    nan_variance = nib.load(variances[7]).get_fdata()
    nan_variance[3, 3, 3] = np.nan
    variances[7] = str(write_map(tmp_path / "nan_variance.nii.gz", nan_variance))
    box = np.zeros(SHAPE, np.uint8)
    box[1:-1, 1:-1, 1:-1] = 1
    write_map(tmp_path / "box.nii.gz", box)
    extra = {"mask_file": str(tmp_path / "box.nii.gz")} if strategy == "file" else {}
    with pytest.warns(NonFiniteWarning, match=r"^1 voxel\(s\) infinite"):
        out = run_in(tmp_path / "mask", ifc.GroupMask(
            in_files=paths, variance_files=variances, strategy=strategy, **extra))
    mask = nib.load(out.mask_file).get_fdata()
    assert out.n_voxels > 0 and mask[INF_VOXEL] == 0
    if strategy == "coverage":  # voxels finite and non-zero in every map: not NAN_VOXEL
        assert out.n_voxels == box.sum() - 2 and mask[NAN_VOXEL] == 0 and mask[3, 3, 3] == 1
    elif strategy != "mni152":  # the others keep the whole box but that voxel; NaN: missing
        assert out.n_voxels == box.sum() - 1 and mask[NAN_VOXEL] == mask[3, 3, 3] == 1


@pytest.mark.parametrize("estimation", ["fixed", "mixed"])
def test_zero_variances_where_the_effect_is_not_zero_are_refused(tmp_path, estimation, capsys):
    table = make_group_table(tmp_path / "data", n_subjects=6, conditions=("a",),
                             variances=True)
    rows = pd.read_csv(table, sep="\t")
    path = table.parent / rows["variance_path"][3]
    variance = nib.load(path).get_fdata()
    variance[:, :6] = 0  # half the brain
    write_map(path, variance)
    code = run(tmp_path, table, "out", "--estimation", estimation)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"nipype-secondlevel: error: variance map {path}: ")
    assert (f"variance map {path}: has a variance of 0 or less, or infinite, at {8 * 5 * 8} "
            "voxel(s) of the analysis mask where its effect is present (first: 0 at voxel "
            "(1, 1, 1)); mixed and fixed effects need a positive variance wherever a map has "
            "a value: fix the map, leave those voxels out (--min-coverage, --min-subjects, "
            "--mask) or use --estimation ols") in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fill, message", [(0.0, "is 0 in every voxel (an empty map)"),
                                           (np.nan, "has no finite value (every voxel is NaN")])
def test_empty_maps_say_so(tmp_path, fill, message, capsys):
    table = make_group_table(tmp_path / "data", n_subjects=4, conditions=("a",))
    rows = pd.read_csv(table, sep="\t")
    path = write_map(table.parent / rows["path"][1], np.full(SHAPE, fill))
    assert run(tmp_path, table, "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"input map {path}: {message}" in err[0], err
    assert "mask is invalid" not in err[0]


def test_masked_data_refuses_infinite_values_in_the_mask(tmp_path):
    """The last guard, whatever mask it is given (e.g. a user's own); NaN is missing."""
    data = np.ones(SHAPE)
    data[2, 3, 4] = np.inf
    data[1, 1, 1] = np.nan
    write_map(tmp_path / "inf.nii.gz", data)
    write_map(tmp_path / "mask.nii.gz", np.ones(SHAPE, np.uint8))
    with pytest.raises(Exception, match=r"inf.nii.gz: has an infinite value at 1 "
                       r"voxel\(s\) of the analysis mask \(first: inf at voxel \(2, 3, 4\), "
                       r"\(6.0, 9.0, 12.0\) mm\)"):
        run_in(tmp_path / "d", ifc.MaskedData(in_files=[str(tmp_path / "inf.nii.gz")],
                                              mask_file=str(tmp_path / "mask.nii.gz")))


def test_localizer_variances_undefined_outside_a_subjects_brain_leave_the_mask(
        tmp_path, monkeypatch):
    """(contrast / t)^2 is undefined where a subject's maps are 0: NaN, a missing value
    (not 0, which the mixed estimate would have to refuse): those voxels are analysed with
    the three other subjects."""
    from localizer_folder import make_localizer_folder

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    root = make_localizer_folder(tmp_path / "data", 4, ["vertical checkerboard",
                                                        "horizontal checkerboard"],
                                 get_tmaps=True, shape=(8, 9, 7))
    for path in (root / "brainomics_data" / "S02").glob("*maps_*.nii.gz"):
        img = nib.load(path)
        data = img.get_fdata()
        data[:2] = 0  # outside this subject's brain
        nib.save(nib.Nifti1Image(data.astype(np.float32), img.affine), path)
    code = main(["localizer", "--n-subjects", "4", "--data-dir", str(tmp_path / "data"),
                 "--estimation", "mixed", "--quiet", "--out-dir", str(tmp_path / "out"),
                 "--work-dir", str(tmp_path / "work")])
    assert code == 0
    mask = nib.load(tmp_path / "out" / "desc-group_mask.nii.gz").get_fdata() > 0
    n = nib.load(tmp_path / "out" / "stat-n_desc-coverage_statmap.nii.gz").get_fdata()
    assert mask[:2].any() and (n[:2][mask[:2]] == 3).all() and (n[2:][mask[2:]] == 4).all()
