"""The merge of a contrast's permutation chunks takes the observed statistic from its
first chunk, which read the data anyway: it does not read all the masked data again
(60 of the 523 s of a max-T run on 10,000 maps, docs/benchmarks.md)."""

from dataclasses import asdict

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import stats

from nipype_secondlevel.interfaces.inference import MergePermutations, PermutationChunk
from nipype_secondlevel.workflows import plan_analysis

N_SUBJECTS, N_PERM = 9, 300


def test_the_merge_takes_the_observed_t_from_the_first_chunk(tmp_path, monkeypatch):
    """With the data file replaced by zeros once the chunks have run, the merge gives the
    same maps: its FWER p of every voxel is that of scipy's one-sample t of the real data
    against the chunks' null maxima (a merge reading the zeros would find t = 0, p = 1)."""
    rng = np.random.default_rng(5)
    mask = np.zeros((6, 6, 6), bool)
    mask[1:5, 1:5, 1:5] = True
    data = (rng.standard_normal((N_SUBJECTS, int(mask.sum()))) + 0.4).astype(np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    files = {"design_matrix": tmp_path / "design.tsv", "data_file": tmp_path / "data.npy",
             "mask_file": tmp_path / "mask.nii.gz"}
    pd.DataFrame({"intercept": np.ones(N_SUBJECTS)}).to_csv(files["design_matrix"], sep="\t",
                                                            index=False)
    np.save(files["data_file"], data)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), files["mask_file"])
    z_map = tmp_path / "z.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.float32), affine), z_map)
    plan = plan_analysis(rows=[{"subject": f"s{i}"} for i in range(N_SUBJECTS)],
                         correction="maxT", n_perm=N_PERM, n_chunks=2)
    contrast = asdict(plan.contrasts[0])
    assert len(contrast["permutations"]["chunks"]) == 2
    inputs = {**{k: str(v) for k, v in files.items()}, "correction": "maxT"}
    monkeypatch.chdir(tmp_path)
    chunk_files = [PermutationChunk(item={"contrast": contrast, "start": start, "stop": stop},
                                    **inputs).run().outputs.chunk_file
                   for start, stop in contrast["permutations"]["chunks"]]

    def merged(folder):
        folder.mkdir()
        monkeypatch.chdir(folder)
        outputs = MergePermutations(contrast=contrast, chunk_files=chunk_files,
                                    z_map=str(z_map), alpha=0.05, **inputs).run().outputs
        return {name: np.asarray(nib.load(path).dataobj)
                for name, path in [(p.split("/")[-1], p) for p in outputs.logp_maps]}

    real = merged(tmp_path / "real")
    np.save(files["data_file"], np.zeros_like(data))
    zeros = merged(tmp_path / "zeros")
    assert real.keys() == zeros.keys() and "logp_max.nii.gz" in real
    for name in real:
        np.testing.assert_array_equal(zeros[name], real[name], err_msg=name)
    null_max = np.asarray(pd.read_csv(tmp_path / "real" / "nulls.tsv", sep="\t").iloc[:, 0])
    t = np.abs(stats.ttest_1samp(data.astype(float), 0.0).statistic)
    p = (null_max[None, :] >= t[:, None] * (1 - 1e-6)).mean(axis=1)
    np.testing.assert_allclose(real["logp_max.nii.gz"][mask], -np.log10(p), rtol=1e-6)
