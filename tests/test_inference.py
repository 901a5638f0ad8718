"""Permutation inference through the interfaces, the sub-workflow and the CLI;
FDR / Bonferroni thresholds against nilearn."""

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_in
from scipy import ndimage, stats

from nipype_secondlevel.cli import main
from nipype_secondlevel.interfaces import Threshold
from nipype_secondlevel.io import naming
from nipype_secondlevel.io.errors import InputError
from nipype_secondlevel.runtime.execution import run_workflow
from nipype_secondlevel.workflows import plan_analysis
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


CONTRASTS = ["patients - controls", "age", "groupAndAge=patients - controls; age"]
LABELS = ["patientsMinusControls", "age", "groupAndAge"]


def _glm_folder(folder, n=7, seed=0):
    """A two-sample design with a covariate written as the workflow's files; z maps
    of the three CONTRASTS (t, t, F) computed here."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    group = (np.arange(n) < 3).astype(float)
    age = rng.standard_normal(n)
    age -= age.mean()
    X = np.column_stack([group, 1 - group, age])
    blob = np.zeros(SHAPE)
    blob[2:6, 2:6, 2:6] = 1.0
    maps = np.stack([(ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.0) * 2
                      + 4 * g * blob + 3 * a * blob[::-1])[mask] for g, a in zip(group, age)])
    maps = maps.astype(np.float32).astype(float)
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "mask.nii.gz")
    np.save(folder / "data.npy", maps.astype(np.float32))
    pd.DataFrame(X, columns=["patients", "controls", "age"]).to_csv(
        folder / "design.tsv", sep="\t", index=False)
    beta = np.linalg.pinv(X) @ maps
    sigma2 = ((maps - X @ beta) ** 2).sum(0) / (n - 3)
    inverse = np.linalg.inv(X.T @ X)
    for label, C in zip(LABELS, ([[1, -1, 0]], [[0, 0, 1]], [[1, -1, 0], [0, 0, 1]])):
        C = np.array(C, dtype=float)
        effect = C @ beta
        V = C @ inverse @ C.T
        if len(C) == 1:
            z = stats.norm.isf(stats.t.sf(effect[0] / np.sqrt(sigma2 * V[0, 0]), n - 3))
        else:
            f = np.einsum("iv,ij,jv->v", effect, np.linalg.inv(V), effect) / 2 / sigma2
            z = stats.norm.isf(stats.f.sf(f, 2, n - 3))
        volume = np.zeros(SHAPE)
        volume[mask] = z
        nib.save(nib.Nifti1Image(volume, affine), folder / f"z_{label}.nii.gz")
    return maps, X, mask


def _plan(folder, n_contrasts=3, **options):
    """The plan of the folder's design (as a design file), with a permutation test."""
    n = len(pd.read_csv(folder / "design.tsv", sep="\t"))
    return plan_analysis(rows=[{"subject": f"s{i}"} for i in range(n)], design="file",
                         design_file=str(folder / "design.tsv"),
                         contrasts=CONTRASTS[:n_contrasts], **options)


def _permutation_wf(folder, n_contrasts=3, name="perm_wf", mem_gb=1.0, **options):
    plan = _plan(folder, n_contrasts, **options)
    assert plan.labels == LABELS[:n_contrasts]
    wf = init_permutation_wf(plan, mem_gb=mem_gb, name=name)
    for field, file in (("data_file", "data.npy"), ("design_matrix", "design.tsv"),
                        ("mask_file", "mask.nii.gz")):
        setattr(wf.inputs.inputnode, field, str(folder / file))
    wf.inputs.inputnode.z_maps = [str(folder / f"z_{label}.nii.gz")
                                  for label in LABELS[:n_contrasts]]
    wf.plan = plan
    return wf


def _outputs(work, wf):
    """Files written by the merge MapNode (one folder per contrast), by the names the sink
    gives them."""
    files = {}
    correction = wf.plan.options["correction"]
    for k, contrast in enumerate(wf.plan.contrasts):
        label, desc = contrast.label, naming.correction_desc(correction, contrast.kind)
        rules = {**naming.logp_maps(label, contrast.kind),
                 "nulls.tsv": naming.output_name("nulls", contrast=label),
                 "corrected.nii.gz": naming.output_name("corrected", contrast=label, desc=desc),
                 "corrected_clusters.tsv": naming.output_name("corrected_clusters",
                                                             contrast=label, desc=desc)}
        folder = work / wf.name / "merge" / "mapflow" / f"_merge{k}"
        written = [str(folder / plain) for plain in rules if (folder / plain).exists()]
        files.update({name: Path(source) for source, name in
                      naming.named_files({"merge": written}, {"merge": rules})})
    return files


def _load(files, name):
    return nib.load(files[name]).get_fdata()


def test_permutation_wf_equals_brute_force_and_writes_sidecars(tmp_path):
    """Three contrasts (t, t, F), exhaustive permutations (6! = 720), cluster size."""
    folder = tmp_path / "data"
    maps, X, mask = _glm_folder(folder, n=6)
    wf = _permutation_wf(folder, correction="cluster-size", n_perm=1000, n_chunks=2,
                         cluster_forming_p=0.01)
    run_workflow(wf, tmp_path / "work", progress=False)
    files = _outputs(tmp_path / "work", wf)
    # the age contrast against a brute-force Freedman-Lane enumeration (numpy)
    Z = X[:, :2]
    fitted = Z @ np.linalg.pinv(Z) @ maps
    pinv = np.linalg.pinv(X)

    def t_age(Y):
        beta = pinv @ Y
        sigma2 = ((Y - X @ beta) ** 2).sum(0) / 3
        return beta[2] / np.sqrt(sigma2 * np.linalg.inv(X.T @ X)[2, 2])

    observed = np.abs(t_age(maps))
    count, count_max = np.zeros(observed.size), np.zeros(observed.size)
    for order in itertools.permutations(range(6)):
        null = np.abs(t_age((maps - fitted)[list(order)] + fitted))
        count += null >= observed - 1e-9 * observed
        count_max += null.max() >= observed - 1e-9 * observed
    for desc, expected in (("uncorrected", count), ("maxT", count_max)):
        logp = _load(files, f"contrast-age_stat-t_desc-{desc}_logp.nii.gz")[mask]
        # maps are float32: compare the counts of patterns
        np.testing.assert_array_equal(np.rint(10 ** -logp * 720), expected, err_msg=desc)
    # every output of every contrast, with its sidecar
    for label, stat in zip(LABELS, "ttF"):
        method = "maxT" if stat == "t" else "maxF"
        for desc in (method, "uncorrected", "clusterSize", "clusterMass"):
            assert f"contrast-{label}_stat-{stat}_desc-{desc}_logp.json" in files
        for name in (f"contrast-{label}_desc-nulls_permutations",
                     f"contrast-{label}_stat-z_desc-clusterSizecorrected_statmap",
                     f"contrast-{label}_stat-z_desc-clusterSizecorrected_clusters"):
            assert f"{name}.json" in files
    sidecar = json.loads(files["contrast-groupAndAge_stat-F_desc-maxF_logp.json"].read_text())
    assert sidecar["Statistic"] == "F" and sidecar["DegreesOfFreedom"] == [2, 3.0]
    assert sidecar["ContrastWeights"] == [{"patients": 1.0, "controls": -1.0, "age": 0.0},
                                          {"patients": 0.0, "controls": 0.0, "age": 1.0}]
    assert sidecar["Correction"] == {
        "Method": "maxT", "Statistic": "F", "NPermutations": 720, "Exhaustive": True,
        "Seed": None, "Scheme": "permute", "ExchangeabilityBlocks": None, "Tail": "positive"}
    significant = json.loads(files[
        "contrast-age_stat-z_desc-clusterSizecorrected_statmap.json"].read_text())
    assert significant["Correction"]["ClusterFormingThreshold"]["p"] == 0.01
    threshold = significant["Threshold"]
    assert threshold["Correction"] == "FWER (cluster-size permutation)"
    assert threshold["TwoSided"] is True
    assert threshold["Description"] == (
        "cluster-size FWE p < 0.05, 720 permutations (exhaustive permutations), "
        f"cluster-forming p < 0.01 (|t| > {stats.t.isf(0.005, 3):.2f})")
    nulls = pd.read_csv(files["contrast-age_desc-nulls_permutations.tsv"], sep="\t")
    assert list(nulls.columns) == ["max_t", "max_cluster_size", "max_cluster_mass"]
    assert len(nulls) == 720
    for label in ("patientsMinusControls", "age"):  # the effects are found
        table = pd.read_csv(files[
            f"contrast-{label}_stat-z_desc-clusterSizecorrected_clusters.tsv"], sep="\t")
        assert len(table) and (table["Cluster FWER p"] < 0.05).all()
        kept = _load(files, f"contrast-{label}_stat-z_desc-clusterSizecorrected_statmap.nii.gz")
        p = 10 ** -_load(files, f"contrast-{label}_stat-t_desc-clusterSize_logp.nii.gz")
        assert np.all((kept != 0) == (p < 0.05))


def _result_times(work, name, node):
    return {p.parent.name: p.stat().st_mtime_ns
            for p in (work / name / node / "mapflow").glob("*/result_*.pklz")}


def test_adding_a_contrast_reruns_only_its_items_and_chunks_change_nothing(tmp_path):
    folder = tmp_path / "data"
    _glm_folder(folder, n=9, seed=1)
    options = {"correction": "maxT", "n_perm": 300, "perm_seed": 5}
    work = tmp_path / "work"
    wf = _permutation_wf(folder, 1, n_chunks=2, **options)
    # the two chunks, run at once, share the budget (1 GiB); the merge has it whole
    chunk_node, merge_node = wf.get_node("chunks"), wf.get_node("merge")
    assert (chunk_node.inputs.mem_gb, chunk_node.mem_gb) == (0.5, 0.5)
    assert (merge_node.inputs.mem_gb, merge_node.mem_gb) == (1.0, 1.0)
    run_workflow(wf, work, progress=False)
    chunks, merges = _result_times(work, "perm_wf", "chunks"), _result_times(work, "perm_wf",
                                                                              "merge")
    assert sorted(chunks) == ["_chunks0", "_chunks1"] and sorted(merges) == ["_merge0"]
    first = _outputs(work, wf)
    before = _load(first, "contrast-patientsMinusControls_stat-t_desc-maxT_logp.nii.gz")
    wf = _permutation_wf(folder, 2, n_chunks=2, **options)
    run_workflow(wf, work, progress=False)
    after_chunks = _result_times(work, "perm_wf", "chunks")
    after_merges = _result_times(work, "perm_wf", "merge")
    assert sorted(after_chunks) == ["_chunks0", "_chunks1", "_chunks2", "_chunks3"]
    assert all(after_chunks[k] == chunks[k] for k in chunks)  # not run again
    assert after_merges["_merge0"] == merges["_merge0"] and "_merge1" in after_merges
    # one chunk per contrast and another memory budget: the same p values
    one_chunk = _permutation_wf(folder, 2, name="one_chunk", n_chunks=1, mem_gb=0.01,
                                **options)
    run_workflow(one_chunk, work, progress=False)
    two, one = _outputs(work, wf), _outputs(work, one_chunk)
    for label in LABELS[:2]:
        for desc in ("maxT", "uncorrected"):
            name = f"contrast-{label}_stat-t_desc-{desc}_logp.nii.gz"
            np.testing.assert_array_equal(_load(one, name), _load(two, name))
    np.testing.assert_array_equal(
        before, _load(two, "contrast-patientsMinusControls_stat-t_desc-maxT_logp.nii.gz"))


def test_a_scheme_that_cannot_test_the_contrast_is_refused(tmp_path):
    folder = tmp_path / "data"
    _glm_folder(folder)
    rows = [{"subject": f"s{i}"} for i in range(7)]
    with pytest.raises(InputError, match="--perm-scheme permute: permutations cannot test"):
        plan_analysis(rows=rows, correction="maxT", perm_scheme="permute")
    plan = plan_analysis(rows=rows, correction="maxT")  # the plan decides, before any node
    (test,) = [c.permutations for c in plan.contrasts]
    assert (test.model, test.scheme, test.n_perm, test.exhaustive) == (
        "one-sample", "sign-flip", 2 ** 7, True)


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
