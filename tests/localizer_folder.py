"""A Brainomics/Localizer data folder laid out as nilearn leaves it after a download."""

import json

import nibabel as nib
import numpy as np
import pandas as pd

from nipype_secondlevel.datasets.simulation import LOCALIZER_AFFINE


def make_localizer_folder(data_dir, n_subjects, contrasts, get_tmaps=False, shape=(6, 7, 5)):
    """Write small maps of subjects 1..n_subjects, and the index (all 94 subjects)
    and participant tables nilearn reads."""
    root = data_dir / "brainomics_localizer"
    data = root / "brainomics_data"
    index = {}
    rng = np.random.default_rng(1)
    for s in range(1, n_subjects + 1):
        sub = f"S{s:02d}"
        (data / sub).mkdir(parents=True, exist_ok=True)
        for contrast in contrasts:
            name = contrast.title().replace(" ", "")
            for kind in ["cmaps"] + (["tmaps"] if get_tmaps else []):
                volume = rng.normal(size=shape).astype(np.float32)
                nib.save(nib.Nifti1Image(volume, LOCALIZER_AFFINE), data / sub / f"{kind}_{name}.nii.gz")
                key = (f"/localizer/derivatives/spm_1st_level/sub-{sub}/"
                       f"sub-{sub}_task-localizer_acq-{name}_{kind}.nii.gz")
                index[key] = f"/{sub}{name}{kind}"
    for s in range(n_subjects + 1, 95):
        for contrast in contrasts:
            name = contrast.title().replace(" ", "")
            for kind in ["cmaps"] + (["tmaps"] if get_tmaps else []):
                key = (f"/localizer/derivatives/spm_1st_level/sub-S{s:02d}/"
                       f"sub-S{s:02d}_task-localizer_acq-{name}_{kind}.nii.gz")
                index[key] = f"/S{s:02d}{name}{kind}"
    subjects = [f"S{s:02d}" for s in range(1, 95)]
    pd.DataFrame({"participant_id": subjects, "age": 30}).to_csv(
        data / "participants.tsv", sep="\t", index=False)
    (data / "phenotype").mkdir(exist_ok=True)
    pd.DataFrame({"participant_id": subjects, "score": 1}).to_csv(
        data / "phenotype" / "behavioural.tsv", sep="\t", index=False)
    index["/localizer/participants.tsv"] = "/participants"
    index["/localizer/phenotype/behavioural.tsv"] = "/behavioural"
    (root / "download").write_text(json.dumps(index))
    return root
