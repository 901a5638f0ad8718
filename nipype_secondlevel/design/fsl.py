"""Inputs tables from FSL FEAT first-level folders.

A first-level FEAT folder (``sub-01/run1.feat``) holds each contrast's effect
``stats/cope<N>``, its variance ``stats/varcope<N>`` and its degrees of freedom
``stats/tdof_t<N>``, 0 outside the analysis mask, in the subject's functional
space. The group analysis needs them in standard space: ``featregapply`` (FSL,
after FEAT's registration) writes them to ``reg_standard/stats/``, as FEAT's
own higher-level analysis does; a FEAT run on data already in standard space
has them in ``stats/`` on the grid of ``reg/standard``. The table has one row
per folder: ``subject`` (from the folder names), ``condition`` (``cope<N>``),
``path`` and ``variance_path``. ``tdof_t`` is not read: fixed effects take one
first-level dof for every map (``--first-level-dof``, e.g. the value of tdof_t).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ..io.errors import bad_input
from ..io.images import load_img
from ..spec import DEFAULTS
from .first_level_folders import (
    check_one_folder_each,
    expand_folders,
    find_image,
    subject_labels,
)

#: Extensions FEAT writes, by FSLOUTPUTTYPE.
_EXTENSIONS = (".nii.gz", ".nii")


def _image(folder, stem):
    return find_image(folder, stem, _EXTENSIONS)


def _same_grid(path, reference):
    a, b = load_img(path, "FEAT image"), load_img(reference, "FEAT standard image")
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def standard_stats_folder(feat_dir, cope):
    """The folder holding contrast ``cope``'s maps in standard space, or a one-line error
    saying how to produce them."""
    feat_dir = Path(feat_dir)
    where = f"FEAT folder {feat_dir}"
    registered = feat_dir / "reg_standard" / "stats"
    if _image(registered, f"cope{cope}"):
        return registered
    native = _image(feat_dir / "stats", f"cope{cope}")
    if native is None:
        copes = sorted(p.name.split(".")[0] for p in (feat_dir / "stats").glob("cope*.nii*"))
        have = f" (it has {', '.join(copes)})" if copes else ""
        raise bad_input(where, f"has no stats/cope{cope}{have}: is it a first-level FEAT "
                        "folder, and is the contrast number right?")
    standard = _image(feat_dir / "reg", "standard")
    if standard is not None and _same_grid(native, standard):
        return feat_dir / "stats"  # a FEAT run in standard space
    raise bad_input(where, f"has no standard-space cope{cope} (reg_standard/stats/"
                    f"cope{cope}.nii.gz) and its stats/ are not on the grid of reg/standard: "
                    f"run `featregapply {feat_dir}` (FSL; it needs FEAT's registration) to "
                    "write them")


def feat_inputs_table(feat_dirs, cope=DEFAULTS["cope"]):
    """The inputs table of contrast ``cope`` of FEAT first-level folders.

    Parameters
    ----------
    feat_dirs : path, glob pattern, or a list of them
        First-level FEAT folders, one per subject (``'sub-*/*.feat'``).
    cope : int
        FEAT contrast number (``cope1`` ...).

    Returns
    -------
    pandas.DataFrame
        ``subject`` (the ``sub-<label>`` folder in the path, else the first
        folder name that differs between them), ``condition`` (``cope<N>``),
        ``path``, ``variance_path`` (absolute; standard space),
        sorted by subject.

    A pattern matching no folder, a folder with no such cope, one whose cope is
    not in standard space (run ``featregapply``), a missing varcope, and
    two folders of one subject are one-line errors.
    """
    folders = expand_folders(feat_dirs, "FEAT folders")
    labels = subject_labels(folders, suffix=".feat")
    check_one_folder_each(folders, labels, "FEAT folders",
                          "give one FEAT folder per subject (combine runs with a "
                          "fixed-effects FEAT first)")
    rows = []
    for folder, label in zip(folders, labels):
        stats_dir = standard_stats_folder(folder, int(cope))
        row = {"subject": label, "condition": f"cope{int(cope)}"}
        for column, stem in (("path", "cope"), ("variance_path", "varcope")):
            image = _image(stats_dir, f"{stem}{int(cope)}")
            if image is None:
                raise bad_input(f"FEAT folder {folder}", f"has cope{int(cope)} but no "
                                f"{stats_dir.relative_to(folder)}/{stem}{int(cope)}.nii.gz")
            row[column] = str(image)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("subject", kind="stable").reset_index(drop=True)
