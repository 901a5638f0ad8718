"""Inputs tables from SPM first-level folders.

An SPM first-level folder (``SPM.mat``, ``beta_*``, ``mask``, ``ResMS``) holds
each t contrast's effect as ``con_000N.nii`` (``.img``/``.hdr`` before SPM12),
NaN outside the analysis mask, and its statistic ``spmT_000N``; an F contrast
has ``ess_000N`` and ``spmF_000N`` instead. SPM writes no variance of a
contrast, so the maps can only be analysed by OLS: mixed and fixed effects,
which weight every map by its first-level variance, are refused. The table has
one row per folder: ``subject`` (from the folder names), ``condition``
(``con000N``) and ``path``.
"""

from pathlib import Path

import pandas as pd

from ..io.errors import bad_input
from ..spec import DEFAULTS
from .first_level_folders import (
    check_one_folder_each,
    expand_folders,
    find_image,
    subject_labels,
)

#: Image extensions of SPM's contrast images (SPM12 NIfTI, SPM5/8 Analyze pairs).
_EXTENSIONS = (".nii", ".img", ".nii.gz")

#: Why variance-weighted estimates are refused for SPM inputs.
NO_VARIANCE = ("SPM writes no variance of its contrasts (con images only), so mixed and "
               "fixed effects cannot weight the maps: use --estimation ols")


def _image(folder, stem):
    return find_image(folder, stem, _EXTENSIONS)


def contrast_image(spm_dir, con):
    """``con_000N`` of an SPM first-level folder, or a one-line error saying why not."""
    spm_dir = Path(spm_dir)
    stem = f"con_{int(con):04d}"
    image = _image(spm_dir, stem)
    if image is not None:
        return image
    where = f"SPM folder {spm_dir}"
    if _image(spm_dir, f"ess_{int(con):04d}") is not None:
        raise bad_input(where, f"contrast {int(con)} is an F contrast (ess_{int(con):04d}); "
                        "a group analysis takes the con image of a t contrast")
    cons = sorted({p.stem.split(".")[0] for p in spm_dir.glob("con_*")
                   if p.name.endswith(_EXTENSIONS)})
    if cons:
        raise bad_input(where, f"has no {stem} (it has {', '.join(cons)})")
    if not (spm_dir / "SPM.mat").is_file():
        raise bad_input(where, f"has no {stem} nor SPM.mat: is it an SPM first-level folder?")
    raise bad_input(where, f"has no con image: estimate contrast {int(con)} in SPM first")


def spm_inputs_table(spm_dirs, con=DEFAULTS["con"], variances=False):
    """The inputs table of contrast ``con`` of SPM first-level folders.

    Parameters
    ----------
    spm_dirs : path, glob pattern, or a list of them
        First-level SPM folders, one per subject (``'sub-*/spm'``).
    con : int
        SPM contrast number (``con_0001`` ...).
    variances : bool
        True (mixed or fixed effects asked for) is a one-line error: SPM writes
        no contrast variance (:data:`NO_VARIANCE`).

    Returns
    -------
    pandas.DataFrame
        ``subject`` (the ``sub-<label>`` folder in the path, else the first
        folder name that differs between them), ``condition`` (``con000N``),
        ``path`` (absolute), sorted by subject.
    """
    if variances:
        named = spm_dirs if isinstance(spm_dirs, (str, Path)) else " ".join(map(str, spm_dirs))
        raise bad_input(f"SPM folders {named}", NO_VARIANCE)
    folders = expand_folders(spm_dirs, "SPM folders")
    labels = subject_labels(folders)
    check_one_folder_each(folders, labels, "SPM folders", "give one SPM folder per subject")
    rows = [{"subject": label, "condition": f"con{int(con):04d}",
             "path": str(contrast_image(folder, con))} for folder, label in zip(folders, labels)]
    return pd.DataFrame(rows).sort_values("subject", kind="stable").reset_index(drop=True)
