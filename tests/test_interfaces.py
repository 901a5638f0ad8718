"""Each interface run on its own, on small data, against nilearn and scipy."""

import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import planned_design, run_in
from localizer_folder import make_localizer_folder
from scipy import stats

from nipype_secondlevel import interfaces as ifc
from nipype_secondlevel.datasets.simulation import LOCALIZER_AFFINE, LOCALIZER_SHAPE


def table_of(simulated):
    return pd.read_csv(simulated.inputs_table, sep="\t")


def test_simulate_is_deterministic_on_the_localizer_grid(tmp_path, simulated):
    again = run_in(tmp_path, ifc.SimulatePaired(n_subjects=16, seed=3))
    other = run_in(tmp_path / "other", ifc.SimulatePaired(n_subjects=16, seed=4))
    first = nib.load(simulated.maps[0])
    assert first.shape == LOCALIZER_SHAPE
    np.testing.assert_array_equal(first.affine, LOCALIZER_AFFINE)
    np.testing.assert_array_equal(first.get_fdata(), nib.load(again.maps[0]).get_fdata())
    assert not np.array_equal(first.get_fdata(), nib.load(other.maps[0]).get_fdata())
    table = table_of(simulated)
    assert list(table.columns) == ["subject", "condition", "path"]
    assert len(table) == 32 and set(table["condition"]) == {"vertical", "horizontal"}
    truth = nib.load(simulated.truth_mask).get_fdata()
    brain = nib.load(simulated.brain_mask).get_fdata() > 0
    assert (truth == 1).sum() > 20 and (truth == -1).sum() > 20
    assert np.all(brain[truth != 0])
    assert np.all(first.get_fdata()[~brain] == 0)


def test_the_simulations_brain_mask_is_nilearns_mni152_mask_on_the_localizer_grid():
    """The mask file the package ships (read without nilearn, so that the demo's first
    node imports none of it) is nilearn's MNI152 brain mask resampled to the grid."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    from nipype_secondlevel.datasets.simulation import LOCALIZER_MASK_FILE, localizer_brain_mask

    reference = resample_img(load_mni152_brain_mask(), target_affine=LOCALIZER_AFFINE,
                             target_shape=LOCALIZER_SHAPE, interpolation="nearest",
                             force_resample=True, copy_header=True)
    mask, affine = localizer_brain_mask()
    np.testing.assert_array_equal(mask, np.asarray(reference.dataobj) > 0)
    np.testing.assert_array_equal(nib.load(LOCALIZER_MASK_FILE).affine, affine)
    assert mask.sum() > 60_000


def test_nilearn_mask_strategy_equals_second_level_model(tmp_path, simulated):
    from nilearn.glm.second_level import SecondLevelModel

    table = table_of(simulated)
    out = run_in(tmp_path, ifc.GroupMask(in_files=list(table["path"])))
    design = pd.DataFrame({"intercept": np.ones(len(table))})
    model = SecondLevelModel().fit(list(table["path"]), design_matrix=design)
    expected = model.masker_.mask_img_.get_fdata() > 0
    ours = nib.load(out.mask_file).get_fdata() > 0
    np.testing.assert_array_equal(ours, expected)
    assert out.n_voxels == expected.sum()


def test_other_mask_strategies(tmp_path, simulated):
    paths = list(table_of(simulated)["path"])
    brain = nib.load(simulated.brain_mask).get_fdata() > 0
    coverage = run_in(tmp_path / "c", ifc.GroupMask(in_files=paths, strategy="coverage"))
    np.testing.assert_array_equal(nib.load(coverage.mask_file).get_fdata() > 0, brain)
    mni = run_in(tmp_path / "m", ifc.GroupMask(in_files=paths, strategy="mni152"))
    np.testing.assert_array_equal(nib.load(mni.mask_file).get_fdata() > 0, brain)
    small = np.zeros(LOCALIZER_SHAPE, np.uint8)
    small[20:25, 20:25, 20:25] = 1
    nib.save(nib.Nifti1Image(small, LOCALIZER_AFFINE), tmp_path / "user_mask.nii.gz")
    user = run_in(tmp_path / "f", ifc.GroupMask(
        in_files=paths, strategy="file", mask_file=str(tmp_path / "user_mask.nii.gz")))
    assert user.n_voxels == 125


def test_paired_design_columns_and_row_order(tmp_path, simulated):
    out = planned_design(tmp_path, simulated.inputs_table, design="paired",
                         conditions=["vertical", "horizontal"])
    design = pd.read_csv(out.design_matrix, sep="\t")
    assert list(design.columns) == ["vertical_vs_horizontal"] + [f"S{i:02d}" for i in range(1, 17)]
    # Rows in the table's order: S01 vertical, S01 horizontal, S02 vertical, ...
    np.testing.assert_array_equal(design.iloc[:, 0], [1, 0] * 16)
    assert out.in_files[0].endswith("sub-S01_cond-vertical_effect.nii.gz")
    assert out.in_files[1].endswith("sub-S01_cond-horizontal_effect.nii.gz")
    labelled = pd.read_csv(out.design_table, sep="\t")
    assert list(labelled["subject"][:3]) == ["S01", "S01", "S02"]
    assert list(labelled["condition"][:2]) == ["vertical", "horizontal"]
    assert os.path.getsize(out.design_plot) > 1000


def test_paired_design_refuses_unequal_conditions(tmp_path, simulated):
    table = table_of(simulated)
    table = table.drop(index=table.index[(table.subject == "S03") & (table.condition == "horizontal")])
    path = tmp_path / "inputs.tsv"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(Exception, match=r"'vertical' has 16 maps and 'horizontal' has 15 "
                                         r"\(only in 'vertical': S03\)"):
        planned_design(tmp_path, path, design="paired", conditions=["vertical", "horizontal"])


@pytest.fixture(scope="module")
def estimated(tmp_path_factory, simulated):
    base = tmp_path_factory.mktemp("estimated")
    design = planned_design(base / "design", simulated.inputs_table, design="paired",
                            conditions=["vertical", "horizontal"])
    mask = run_in(base / "mask", ifc.GroupMask(in_files=design.in_files))
    estimate = run_in(base / "estimate", ifc.EstimateOLS(
        in_files=design.in_files, design_matrix=design.design_matrix,
        mask_file=mask.mask_file, chunk_size=10000))
    return base, design, mask, estimate


def contrast_of(base, design, mask, estimate, **kwargs):
    """The design's own contrast (the plan's), or the weights and label given."""
    kwargs = kwargs or {"weights": design.contrasts[0].weights,
                        "contrast_name": design.contrasts[0].label}
    return run_in(base / "contrast", ifc.Contrast(
        beta=estimate.beta, residual_variance=estimate.residual_variance, dof=estimate.dof,
        design_matrix=design.design_matrix, mask_file=mask.mask_file, **kwargs))


def test_contrast_equals_nilearn_and_scipy(estimated):
    from nilearn.glm.second_level import SecondLevelModel

    _, design, mask, estimate = estimated
    out = contrast_of(*estimated)
    assert out.contrast_name == "verticalVsHorizontal" and estimate.dof == 15
    in_mask = nib.load(mask.mask_file).get_fdata() > 0
    X = pd.read_csv(design.design_matrix, sep="\t")
    model = SecondLevelModel(mask_img=mask.mask_file).fit(design.in_files, design_matrix=X)
    expected = model.compute_contrast("vertical_vs_horizontal", output_type="all")
    for stat, key in [("z", "z_score"), ("t", "stat"), ("effect", "effect_size"),
                      ("variance", "effect_variance"), ("p", "p_value")]:
        ours = nib.load(getattr(out, f"{stat}_map")).get_fdata()[in_mask]
        theirs = expected[key].get_fdata()[in_mask]
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5, err_msg=stat)
    vertical = np.stack([nib.load(p).get_fdata()[in_mask] for p in design.in_files[0::2]])
    horizontal = np.stack([nib.load(p).get_fdata()[in_mask] for p in design.in_files[1::2]])
    ttest = stats.ttest_rel(vertical, horizontal, axis=0)
    z_scipy = stats.norm.isf(stats.t.sf(ttest.statistic, 15))
    z = nib.load(out.z_map).get_fdata()[in_mask]
    finite = np.abs(z_scipy) < 8  # isf of a tiny sf loses precision; compare where it holds
    np.testing.assert_allclose(z[finite], z_scipy[finite], atol=1e-5)
    effect = nib.load(out.effect_map).get_fdata()[in_mask]
    np.testing.assert_allclose(effect, (vertical - horizontal).mean(axis=0), atol=1e-5)


def test_contrast_by_weights_and_names(estimated, simulated, tmp_path):
    """The plan resolves names and expressions into weights; the node takes weights."""
    by_weights = contrast_of(*estimated, weights=[[1.0] + [0.0] * 16], contrast_name="paired")
    by_name = contrast_of(*estimated)
    assert by_weights.contrast_name == "paired"
    assert os.path.basename(by_weights.z_map) == "z.nii.gz"  # the sink names it
    np.testing.assert_array_equal(nib.load(by_weights.t_map).get_fdata(),
                                  nib.load(by_name.t_map).get_fdata())
    plan = planned_design(tmp_path, simulated.inputs_table, design="paired",
                          conditions=["vertical", "horizontal"],
                          contrasts=["S01 - S02", "vertical_vs_horizontal"]).plan
    subject, condition = plan.contrasts
    assert (subject.label, subject.kind) == ("s01MinusS02", "t")
    assert subject.weights == [[0.0, 1.0, -1.0] + [0.0] * 14]
    assert condition.weights == [[1.0] + [0.0] * 16]


def test_unknown_contrast_column_lists_the_columns(simulated, tmp_path):
    with pytest.raises(Exception, match=r"contrast 'diagonal': .*columns are "
                                        r"vertical_vs_horizontal, S01, S02"):
        planned_design(tmp_path, simulated.inputs_table, design="paired",
                       conditions=["vertical", "horizontal"], contrasts=["diagonal"])


def test_threshold_equals_nilearn_and_tabulates_clusters(estimated, tmp_path):
    from nilearn.glm import threshold_stats_img

    mask = estimated[2]
    z = contrast_of(*estimated).z_map
    out = run_in(tmp_path / "z", ifc.Threshold(z_map=z, mask_file=mask.mask_file,
                                               threshold=3.1, contrast_name="vh"))
    expected, _ = threshold_stats_img(z, mask_img=mask.mask_file, threshold=3.1,
                                      height_control=None, two_sided=True)
    np.testing.assert_array_equal(nib.load(out.thresholded_map).get_fdata(), expected.get_fdata())
    data = nib.load(out.thresholded_map).get_fdata()
    assert data.max() > 3.1 and data.min() < -3.1
    assert np.all((data == 0) | (np.abs(data) > 3.1))
    table = pd.read_csv(out.cluster_table, sep="\t")
    assert {"X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"} <= set(table.columns)
    assert table["Peak Stat"].max() == pytest.approx(data.max(), abs=1e-4)
    by_p = run_in(tmp_path / "p", ifc.Threshold(z_map=z, mask_file=mask.mask_file,
                                                height_control="fpr", alpha=0.001,
                                                cluster_size=10))
    assert by_p.z_threshold == pytest.approx(stats.norm.isf(0.0005), abs=1e-6)
    kept = nib.load(by_p.thresholded_map).get_fdata()
    assert np.count_nonzero(kept) < np.count_nonzero(np.abs(data) > by_p.z_threshold)


def test_glass_brain_png_decodes(estimated, tmp_path):
    import matplotlib.image as mpimg

    z = contrast_of(*estimated).z_map
    out = run_in(tmp_path, ifc.GlassBrain(stat_map=z, threshold=3.1, contrast_name="vh"))
    assert os.path.basename(out.out_file) == "glassbrain.png"  # the sink names it
    picture = mpimg.imread(out.out_file)
    assert picture.shape[0] > 200 and picture.shape[1] > 500
    assert picture[..., :3].std() > 0.05  # not blank


def test_estimate_refuses_rank_deficient_design(estimated, tmp_path):
    _, design, mask, _ = estimated
    X = pd.read_csv(design.design_matrix, sep="\t")
    X["copy"] = X["S01"]
    X.to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    with pytest.raises(Exception, match="rank deficient"):
        run_in(tmp_path, ifc.EstimateOLS(in_files=design.in_files, mask_file=mask.mask_file,
                                         design_matrix=str(tmp_path / "design.tsv")))


def test_sink_writes_atomically_under_the_given_names(tmp_path):
    src = tmp_path / "z.nii.gz"
    src.write_bytes(b"x" * 1000)
    name = "contrast-a_stat-z_statmap.nii.gz"
    sink = ifc.DerivativesSink(out_dir=str(tmp_path / "out"), names={"z_map": name})
    sink.inputs.z_map = str(src)
    out = run_in(tmp_path / "node", sink)
    assert [os.path.basename(f) for f in out.out_files] == [name]
    # no temporary left; the manifest lists what was exported
    assert sorted(os.listdir(tmp_path / "out")) == [".nipype-secondlevel-results.json", name]
    assert (tmp_path / "out" / name).read_bytes() == src.read_bytes()


@pytest.fixture
def offline(monkeypatch):
    """Any HTTP(S) request goes to a closed loopback port and fails at once."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)


CHECKERBOARDS = ["vertical checkerboard", "horizontal checkerboard"]


def test_fetch_uses_files_in_the_data_folder_with_no_network(tmp_path, offline):
    make_localizer_folder(tmp_path / "data", 3, CHECKERBOARDS, get_tmaps=True)
    out = run_in(tmp_path / "node", ifc.FetchLocalizer(
        n_subjects=3, get_tmaps=True, data_dir=str(tmp_path / "data")))
    table = pd.read_csv(out.inputs_table, sep="\t")
    assert list(table["condition"]) == ["vertical"] * 3 + ["horizontal"] * 3
    assert list(table["subject"]) == ["S01", "S02", "S03"] * 2
    assert table["path"].iloc[0].endswith("S01/cmaps_VerticalCheckerboard.nii.gz")
    assert table["tmap_path"].iloc[3].endswith("S01/tmaps_HorizontalCheckerboard.nii.gz")
    assert all(os.path.exists(p) for p in out.cmaps + out.tmaps)


def test_fetch_without_network_or_files_names_the_folder(tmp_path, offline):
    make_localizer_folder(tmp_path / "data", 2, CHECKERBOARDS)
    folder = tmp_path / "data" / "brainomics_localizer"
    with pytest.raises(Exception, match=rf"Localizer data folder {folder}: download failed "
                                        r"\(.*\) and 2 needed file\(s\) are missing, e\.g\. "
                                        r"brainomics_data/S03/cmaps_VerticalCheckerboard"):
        run_in(tmp_path / "node", ifc.FetchLocalizer(n_subjects=3, data_dir=str(tmp_path / "data")))


def test_fetch_refuses_unknown_contrast(tmp_path):
    with pytest.raises(Exception, match="contrast 'diagonal checkerboard': is not a"):
        run_in(tmp_path, ifc.FetchLocalizer(contrasts=["diagonal checkerboard"],
                                            data_dir=str(tmp_path)))
