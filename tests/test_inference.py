"""Permutation inference through the interfaces, the MapNode workflow and the CLI;
FDR / Bonferroni thresholds against nilearn."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from scipy import ndimage

from nipype_secondlevel.cli import main
from nipype_secondlevel.interfaces import Threshold
from nipype_secondlevel.runtime.execution import run_workflow
from nipype_secondlevel.workflows.inference import init_permutation_wf

SHAPE = (10, 11, 9)


def _one_sample_folder(folder, n=12, seed=0):
    """Tiny one-sample problem written as the workflow's files."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    effect = np.zeros(SHAPE)
    effect[3:6, 3:6, 3:6] = 1.2
    maps = np.stack([(ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.0) * 3
                      + effect)[mask] for _ in range(n)])
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "mask.nii.gz")
    np.save(folder / "data.npy", maps.astype(np.float32))
    pd.DataFrame({"intercept": np.ones(n)}).to_csv(folder / "design.tsv", sep="\t",
                                                   index=False)
    from scipy import stats
    t = stats.ttest_1samp(maps.astype(np.float32).astype(float), 0).statistic
    z = np.zeros(SHAPE)
    z[mask] = stats.norm.isf(stats.t.sf(t, n - 1))
    nib.save(nib.Nifti1Image(z, affine), folder / "z.nii.gz")
    return maps.astype(np.float32).astype(float), mask, affine


def _run_permutation_wf(folder, work, n_chunks, **options):
    wf = init_permutation_wf(model="one-sample", n_chunks=n_chunks, name=f"perm{n_chunks}",
                             **options)
    for field, name in (("data_file", "data.npy"), ("design_matrix", "design.tsv"),
                        ("mask_file", "mask.nii.gz"), ("z_map", "z.nii.gz")):
        setattr(wf.inputs.inputnode, field, str(folder / name))
    wf.inputs.inputnode.contrast_name = "mean"
    run_workflow(wf, work, progress=False)
    merge = work / wf.name / "merge"
    return {p.name: p for p in merge.iterdir() if p.suffix in (".gz", ".tsv")}


def _logp(files, desc):
    return nib.load(files[f"contrast-mean_stat-t_desc-{desc}_logp.nii.gz"]).get_fdata()


def test_chunks_do_not_change_results_through_the_mapnode(tmp_path):
    folder = tmp_path / "data"
    _one_sample_folder(folder)
    options = {"n_perm": 300, "seed": 4, "correction": "cluster-mass"}
    one = _run_permutation_wf(folder, tmp_path / "work", 1, **options)
    four = _run_permutation_wf(folder, tmp_path / "work", 4, **options)
    assert len(list((tmp_path / "work" / "perm4" / "chunks").glob("mapflow/_chunks*"))) == 4
    for desc in ("maxT", "uncorrected", "clusterSize", "clusterMass"):
        np.testing.assert_array_equal(_logp(one, desc), _logp(four, desc), err_msg=desc)
    nulls = pd.read_csv(one["contrast-mean_desc-nulls_permutations.tsv"], sep="\t")
    assert list(nulls.columns) == ["h0_max_t", "h0_max_size", "h0_max_mass"]
    assert len(nulls) == 300
    assert _logp(one, "clusterMass").max() >= -np.log10(0.05)  # the effect is found
    significant = nib.load(one["contrast-mean_stat-z_desc-clusterMasscorrected_statmap.nii.gz"])
    assert np.count_nonzero(significant.get_fdata()) > 0


def test_max_t_through_the_workflow_agrees_with_nilearn(tmp_path):
    from nilearn.mass_univariate import permuted_ols

    folder = tmp_path / "data"
    maps, mask, _ = _one_sample_folder(folder, n=13, seed=1)
    n_perm = 4000  # 2^13 = 8192 > 4000: random sign flips
    files = _run_permutation_wf(folder, tmp_path / "work", 2, n_perm=n_perm, seed=2)
    ours = 10 ** -_logp(files, "maxT")[mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = permuted_ols(np.ones((13, 1)), maps, model_intercept=False, n_perm=n_perm,
                              two_sided_test=True, random_state=0, n_jobs=1, verbose=0)
    theirs = 10 ** -theirs["logp_max_t"][0]
    se = np.sqrt(2 * ours * (1 - ours) / n_perm) + 1 / n_perm
    assert np.all(np.abs(ours - theirs) <= 5 * se)
    assert (ours < 0.05).sum() > 5


@pytest.mark.parametrize("height_control", ["fdr", "bonferroni"])
@pytest.mark.parametrize("two_sided", [True, False])
def test_fdr_and_bonferroni_equal_nilearn(tmp_path, height_control, two_sided):
    from nilearn.glm import threshold_stats_img
    from scipy import stats

    folder = tmp_path / "data"
    _, mask, _affine = _one_sample_folder(folder, seed=2)
    z_img = nib.load(folder / "z.nii.gz")
    mask_img = nib.load(folder / "mask.nii.gz")
    out = run_in(tmp_path / "threshold", Threshold(
        z_map=str(folder / "z.nii.gz"), mask_file=str(folder / "mask.nii.gz"),
        height_control=height_control, alpha=0.05, two_sided=two_sided,
        contrast_name="mean"))
    expected, z_threshold = threshold_stats_img(
        z_img, mask_img=mask_img, alpha=0.05, height_control=height_control,
        two_sided=two_sided)
    np.testing.assert_array_equal(nib.load(out.thresholded_map).get_fdata(),
                                  expected.get_fdata())
    assert out.z_threshold == pytest.approx(z_threshold)
    # independently: Bonferroni z = isf(alpha / (sides * n_voxels)); BH step-up
    z = z_img.get_fdata()[mask]
    sides = 2 if two_sided else 1
    p = stats.norm.sf(np.abs(z) if two_sided else z) * sides
    if height_control == "bonferroni":
        assert z_threshold == pytest.approx(stats.norm.isf(0.05 / (sides * z.size)))
    else:
        ranked = np.sort(p)
        passed = np.flatnonzero(ranked <= 0.05 * np.arange(1, p.size + 1) / p.size)
        assert passed.size and np.count_nonzero(p <= ranked[passed[-1]]) == np.count_nonzero(
            nib.load(out.thresholded_map).get_fdata())
    table = pd.read_csv(out.cluster_table, sep="\t")
    assert {"X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"} <= set(table.columns)


def test_cli_max_t_writes_logp_maps(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["demo", "--n-subjects", "6", "--correction", "maxT", "--n-perm", "100",
                 "--n-chunks", "2", "--quiet", "--out-dir", str(out),
                 "--work-dir", str(tmp_path / "work")])
    assert code == 0
    stem = "contrast-verticalVsHorizontal_stat-t_desc-"
    for desc in ("maxT", "uncorrected"):
        logp = nib.load(out / f"{stem}{desc}_logp.nii.gz").get_fdata()
        # 6 subjects: all 2^6 = 64 sign patterns (64 <= 100), so p >= 1/64
        assert 0 <= logp.max() <= np.log10(64) + 1e-9
    nulls = pd.read_csv(out / "contrast-verticalVsHorizontal_desc-nulls_permutations.tsv",
                        sep="\t")
    assert len(nulls) == 64
    assert (out / "contrast-verticalVsHorizontal_stat-z_desc-maxTcorrected_statmap.nii.gz"
            ).exists()
    assert (out / "contrast-verticalVsHorizontal_stat-z_glassbrain.png").exists()
