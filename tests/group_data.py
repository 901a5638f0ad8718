"""Small inputs tables for the general designs: 10 x 12 x 10 maps, written to a folder."""

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (10, 12, 10)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def write_map(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), path)
    return path


def make_group_table(folder, n_subjects=12, conditions=("a", "b"), seed=0, variances=False,
                     shape=SHAPE):
    """Maps of every subject and condition with relative paths; a group column (two
    groups), two covariates (age, score) and, with ``variances``, variance maps.

    Returns the table's path.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "maps").mkdir(exist_ok=True)
    inside = np.zeros(shape, bool)
    inside[1:-1, 1:-1, 1:-1] = True
    rows = []
    ages = rng.uniform(20, 60, n_subjects).round(1)
    scores = rng.normal(size=n_subjects)
    for s in range(n_subjects):
        group = "patients" if s % 2 else "controls"
        for c, condition in enumerate(conditions):
            v = rng.uniform(0.2, 2.0, shape)
            effect = (rng.normal(size=shape) + 0.5 * (group == "patients") + 0.3 * c
                      + 0.05 * ages[s] + rng.normal(scale=np.sqrt(v)))
            effect = np.where(inside, effect, 0.0)
            name = f"maps/sub-{s:02d}_cond-{condition}.nii.gz"
            write_map(folder / name, effect)
            row = {"subject": f"s{s:02d}", "condition": condition, "group": group,
                   "path": name, "age": ages[s], "score": scores[s]}
            if variances:
                vname = f"maps/sub-{s:02d}_cond-{condition}_variance.nii.gz"
                write_map(folder / vname, np.where(inside, v, 0.0))
                row["variance_path"] = vname
            rows.append(row)
    table = folder / "inputs.tsv"
    pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
    return table


def file_checksums(folder):
    """sha256 of every file under ``folder`` (relative path -> hex; links not followed)."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def masked_noise(n_rows, shape, margin, n_effect, effect, seed):
    """(Y (n_rows, n_voxels), mask): standard normal values in a box mask ``margin``
    voxels inside ``shape``, ``effect`` added to the first ``n_effect`` voxels."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(margin, s - margin) for s in shape)] = True
    Y = np.random.default_rng(seed).standard_normal((n_rows, int(mask.sum())))
    Y[:, :n_effect] += effect
    return Y, mask
