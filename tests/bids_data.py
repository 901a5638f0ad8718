"""A generated BIDS dataset with first-level results as BIDS derivatives (FitLins layout).

``<folder>/raw``: ``dataset_description.json`` and ``participants.tsv`` (``group``:
two groups, ``age``); ``<folder>/raw/derivatives/firstlevel``: for every subject
(and session), ``sub-XX/[ses-Y/]func/sub-XX_[ses-Y_]task-loc_space-MNI152NLin2009cAsym_
contrast-<c>_stat-{effect,variance,t,z}_statmap.nii.gz`` (names as nilearn's
``save_glm_to_bids`` and FitLins write them), small 3D maps. The equivalent inputs
table, written by hand from what was generated (no pybids), is returned with it.
"""

import json

import numpy as np
import pandas as pd
from group_data import SHAPE, write_map

TASK, SPACE = "loc", "MNI152NLin2009cAsym"


def make_bids_derivatives(folder, n_subjects=10, contrasts=("faces", "houses"), sessions=(),
                          participants_at="raw", seed=0):
    """Write the dataset; return (raw_dir, derivatives_dir, expected inputs table).

    ``participants_at``: ``"raw"`` or ``"derivatives"`` (where participants.tsv is).
    The expected table has subject, condition, group, path, variance_path, age;
    condition is the contrast, or ``session<label>`` with one contrast and sessions.
    """
    rng = np.random.default_rng(seed)
    raw = folder / "raw"
    deriv = raw / "derivatives" / "firstlevel"
    deriv.mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "generated", "BIDSVersion": "1.9.0"}))
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "first level", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "generator"}]}))
    inside = np.zeros(SHAPE, bool)
    inside[1:-1, 1:-1, 1:-1] = True
    subjects = [f"{s + 1:02d}" for s in range(n_subjects)]
    groups = ["patients" if s % 2 else "controls" for s in range(n_subjects)]
    ages = rng.uniform(20, 60, n_subjects).round(1)
    participants = pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects],
                                 "group": groups, "age": ages, "sex": "n/a"})
    participants.to_csv((raw if participants_at == "raw" else deriv) / "participants.tsv",
                        sep="\t", index=False)
    rows = []
    for s, (subject, group, age) in enumerate(zip(subjects, groups, ages)):
        for session in sessions or [None]:
            folder_of = deriv / f"sub-{subject}" / (f"ses-{session}" if session else "") / "func"
            folder_of.mkdir(parents=True, exist_ok=True)
            for c, contrast in enumerate(contrasts):
                variance = rng.uniform(0.2, 2.0, SHAPE)
                effect = (rng.normal(size=SHAPE) + 0.8 * (group == "patients") + 0.4 * c
                          + 0.03 * age + rng.normal(scale=np.sqrt(variance)))
                ses = f"_ses-{session}" if session else ""
                stem = (f"sub-{subject}{ses}_task-{TASK}_space-{SPACE}_contrast-{contrast}")
                maps = {stat: folder_of / f"{stem}_stat-{stat}_statmap.nii.gz"
                        for stat in ("effect", "variance", "t", "z")}
                write_map(maps["effect"], np.where(inside, effect, 0.0))
                write_map(maps["variance"], np.where(inside, variance, 0.0))
                write_map(maps["t"], np.where(inside, effect / np.sqrt(variance), 0.0))
                write_map(maps["z"], np.where(inside, effect / np.sqrt(variance), 0.0))
                condition = f"session{session}" if sessions and len(contrasts) == 1 \
                    else contrast
                rows.append({"subject": f"sub-{subject}", "condition": condition,
                             "group": group, "path": str(maps["effect"]),
                             "variance_path": str(maps["variance"]), "age": age})
    # A group-level map at the root (no subject) that must not be taken as an input.
    write_map(deriv / f"task-{TASK}_contrast-{contrasts[0]}_stat-effect_statmap.nii.gz",
              np.zeros(SHAPE))
    expected = pd.DataFrame(rows).sort_values(["subject", "condition"]).reset_index(drop=True)
    return raw, deriv, expected


def make_fitlins_derivatives(deriv, target, subject_node="subjectLevel"):
    """The subject-level maps of ``deriv`` (from :func:`make_bids_derivatives`, no
    sessions) laid out as FitLins writes a model's outputs: one folder per node,
    ``node-<name>/[sub-<label>/]<entities>_contrast-<c>_stat-<s>_statmap.nii.gz`` (no
    datatype folder; FitLins' ``contrast_pattern``). Beside them, decoys a run of the
    node must not take: run-level maps (``node-runLevel``, the t maps under an effect
    name) and a dataset-level map (``node-datasetLevel``, no subject). Files are hard
    links. Returns {(subject, contrast, stat): path} of the subject-level maps."""
    import os

    (target / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (target / "dataset_description.json").write_text(json.dumps(
        {"Name": "FitLins output", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "FitLins", "Version": "0.11.0"}]}))
    found = {}
    for path in sorted(deriv.glob("sub-*/func/*_statmap.nii.gz")):
        subject = path.name.split("_")[0]
        contrast = path.name.split("_contrast-")[1].split("_")[0]
        stat = path.name.split("_stat-")[1].split("_")[0]
        folder = target / f"node-{subject_node}" / subject
        folder.mkdir(parents=True, exist_ok=True)
        os.link(path, folder / path.name)
        found[subject, contrast, stat] = folder / path.name
        if stat == "t":
            runs = target / "node-runLevel" / subject
            runs.mkdir(parents=True, exist_ok=True)
            decoy = path.name.replace(f"_task-{TASK}_", f"_task-{TASK}_run-1_")
            os.link(path, runs / decoy.replace("_stat-t_", "_stat-effect_"))
            os.link(path, runs / decoy.replace("_stat-t_", "_stat-variance_"))
    group = target / "node-datasetLevel"
    group.mkdir()
    write_map(group / f"task-{TASK}_space-{SPACE}_contrast-faces_stat-t_statmap.nii.gz",
              np.zeros(SHAPE))
    return found
