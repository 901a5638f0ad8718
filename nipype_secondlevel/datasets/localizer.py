"""The Brainomics/Localizer maps as the analysis needs them: fetched through nilearn into an
inputs table, with first-level variances from t.

nilearn's fetcher gives each subject's contrast (effect) map and its t map
(SPM's first level); a variance-weighted group analysis needs each effect's
variance, which is (effect / t)^2 since t = effect / sqrt(variance).
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..io.errors import bad_input
from ..io.files import save_img
from ..io.images import load_img, read_data


def variance_from_t(effect, t):
    """Variance of a contrast from its t map: (effect / t)^2, NaN where that is undefined.

    Where t is 0 (or either value is not finite) the variance cannot be
    recovered (outside the subject's brain in SPM maps): NaN, so the analysis
    mask leaves those voxels out, rather than 0, an infinite weight that a
    variance-weighted estimate refuses.
    """
    effect = np.asarray(effect, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (effect / t) ** 2
    return np.where(np.isfinite(variance), variance, np.nan)


LOCALIZER_FOLDER = "brainomics_localizer"


def localizer_folder(data_dir=None):
    """The folder nilearn keeps the Localizer data in, for ``data_dir``."""
    from nilearn.datasets import get_data_dirs

    return Path(get_data_dirs(data_dir)[0]) / LOCALIZER_FOLDER


def expected_localizer_files(contrasts, subjects, get_tmaps):
    """Paths, relative to :func:`localizer_folder`, that the fetch yields."""
    kinds = ["cmaps"] + (["tmaps"] if get_tmaps else [])
    names = [c.title().replace(" ", "") for c in contrasts]
    return [
        Path("brainomics_data", f"S{s:02d}", f"{kind}_{name}.nii.gz")
        for s in subjects
        for kind in kinds
        for name in names
    ]


def unreadable_nifti(path):
    """Why ``path`` is not a complete NIfTI image (reading all of its data), or None.

    Catches what an interrupted or corrupted download leaves: a missing or
    truncated file, a gzip stream cut short, an error page saved under the name.
    """
    try:
        img = nib.load(str(path))
        data = read_data(img, path, "Localizer map")  # the gzip checksum verified too
        if data.size != int(np.prod(img.shape)):
            return f"holds {data.size} values, its header says {img.shape}"
    except Exception as err:  # noqa: BLE001 (nibabel, gzip and zlib raise many types)
        cause = err.__cause__ or err  # read_data's one-line error wraps the reader's
        return f"{type(cause).__name__}: {cause}".strip().splitlines()[0]
    return None


def discard_download(path, folder):
    """Delete a bad download and any copy nilearn kept in its sandbox folders.

    nilearn downloads into ``<folder>/<md5>/`` and moves files into place when all
    are there; a copy left in such a folder would be moved back instead of
    downloaded again.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    try:
        relative = path.absolute().relative_to(Path(folder).absolute())
    except ValueError:
        return
    for sandbox in Path(folder).iterdir():
        if sandbox.is_dir() and len(sandbox.name) == 32 and sandbox.name.isalnum():
            for stale in (sandbox / relative, sandbox / f"{relative}.part"):
                stale.unlink(missing_ok=True)


def _fetch_contrast(contrast, contrasts, subjects, get_tmaps, data_dir):
    """nilearn's fetcher for one contrast, with a one-line error if it fails."""
    from nilearn.datasets import fetch_localizer_contrasts

    try:
        return fetch_localizer_contrasts(
            [contrast],
            n_subjects=list(subjects),
            get_tmaps=get_tmaps,
            data_dir=data_dir,
            verbose=1,
        )
    except Exception as err:  # network and disk errors come in many types
        folder = localizer_folder(data_dir)
        missing = [
            p
            for p in expected_localizer_files(contrasts, subjects, get_tmaps)
            if not (folder / p).exists()
        ]
        raise bad_input(
            f"Localizer data folder {folder}",
            f"download failed ({type(err).__name__}) and {len(missing)} needed "
            f"file(s) are missing, e.g. {missing[0] if missing else 'the index'}",
        ) from err


def _fetched_maps(bunch):
    return list(bunch["cmaps"]) + list(bunch.get("tmaps", None) or [])


def localizer_rows(subjects, conditions):
    """Subject and condition of every fetched map, in the table order of
    :func:`fetch_localizer_table` (each condition's subjects in turn)."""
    return [{"subject": f"S{int(s):02d}", "condition": str(c)}
            for c in conditions for s in subjects]


def fetch_localizer_table(contrasts, conditions, subjects, get_tmaps, data_dir=None):
    """Fetch maps with nilearn and return the inputs table.

    Files already in the data folder are used as they are, with no network,
    once each is checked to be a complete NIfTI image (all data read). A bad
    file (an interrupted or corrupted download) is deleted and fetched again;
    if the new copy is bad too, the error names it. Columns: subject,
    condition, path (contrast map) and, with ``get_tmaps``, tmap_path.
    """
    from nilearn.datasets.func import ALLOWED_CONTRASTS, CONTRAST_NAME_WRAPPER

    for contrast in contrasts:
        if contrast not in ALLOWED_CONTRASTS and contrast not in CONTRAST_NAME_WRAPPER:
            raise bad_input(
                f"contrast {contrast!r}", "is not a Brainomics/Localizer contrast"
            )
    folder = localizer_folder(data_dir)
    rows = []
    labels = iter(localizer_rows(subjects, conditions))
    for contrast in contrasts:
        bunch = _fetch_contrast(contrast, contrasts, subjects, get_tmaps, data_dir)
        bad = [p for p in _fetched_maps(bunch) if unreadable_nifti(p)]
        if bad:
            for path in bad:
                discard_download(path, folder)
            bunch = _fetch_contrast(contrast, contrasts, subjects, get_tmaps, data_dir)
            for path in _fetched_maps(bunch):
                problem = unreadable_nifti(path)
                if problem:
                    raise bad_input(
                        f"Localizer map {path}",
                        f"is not a complete NIfTI image even after downloading it "
                        f"again ({problem})",
                    )
        if len(bunch["cmaps"]) != len(subjects):
            raise bad_input(
                f"contrast {contrast!r}",
                f"the Localizer index lists {len(bunch['cmaps'])} of the "
                f"{len(subjects)} subjects asked for",
            )
        tmaps = bunch.get("tmaps", [None] * len(bunch["cmaps"]))
        for cmap, tmap in zip(bunch["cmaps"], tmaps):
            row = {**next(labels), "path": cmap}
            if get_tmaps:
                row["tmap_path"] = tmap
            rows.append(row)
    return pd.DataFrame(rows)


def write_variance_maps(table, out_dir):
    """Each row's first-level variance map, (contrast / t)^2, written to ``out_dir``.

    Returns the paths in table order. A t map on another grid than its
    contrast map is a one-line error.
    """
    written = []
    for i, row in enumerate(table.to_dict("records")):
        effect = load_img(row["path"], "contrast map")
        tmap = load_img(row["tmap_path"], "t map")
        if effect.shape != tmap.shape or not np.allclose(effect.affine, tmap.affine,
                                                          atol=1e-3):
            raise bad_input(f"t map {row['tmap_path']}",
                            f"is not on the grid of its contrast map {row['path']}")
        variance = variance_from_t(np.asanyarray(effect.dataobj), np.asanyarray(tmap.dataobj))
        written.append(save_img(
            nib.Nifti1Image(variance.astype(np.float32), effect.affine),
            Path(out_dir) / f"{i:04d}_{row['subject']}_{row['condition']}_variance.nii.gz"))
    return written
