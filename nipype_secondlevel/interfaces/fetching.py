"""Fetch: the Brainomics/Localizer contrast maps through nilearn."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..datasets.localizer import variance_from_t
from ..io.errors import bad_input
from ..io.files import save_img, save_tsv
from ..io.images import load_img

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
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        if data.size != int(np.prod(img.shape)):
            return f"holds {data.size} values, its header says {img.shape}"
    except Exception as err:  # noqa: BLE001 (nibabel, gzip and zlib raise many types)
        return f"{type(err).__name__}: {err}".strip().splitlines()[0]
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
    for contrast, condition in zip(contrasts, conditions):
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
        for subject, cmap, tmap in zip(subjects, bunch["cmaps"], tmaps):
            row = {"subject": f"S{subject:02d}", "condition": condition, "path": cmap}
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


class _FetchLocalizerInputSpec(BaseInterfaceInputSpec):
    contrasts = traits.List(
        traits.Str,
        value=["vertical checkerboard", "horizontal checkerboard"],
        usedefault=True,
        minlen=1,
        desc="Localizer contrast names, as nilearn's fetch_localizer_contrasts",
    )
    conditions = traits.List(
        traits.Str,
        desc="condition label for each contrast (default: first word of each)",
    )
    n_subjects = traits.Range(
        low=1, high=94, value=16, usedefault=True, xor=["subjects"],
        desc="fetch subjects 1..n_subjects",
    )
    subjects = traits.List(
        traits.Range(low=1, high=94), xor=["n_subjects"],
        desc="subject numbers to fetch (1-94)",
    )
    get_tmaps = traits.Bool(False, usedefault=True, desc="fetch the t maps too")
    variances = traits.Bool(
        False, usedefault=True,
        desc="fetch the t maps too and write each map's first-level variance, "
        "(contrast / t)^2, as the table's variance_path column (variance-weighted "
        "estimation)",
    )
    data_dir = Directory(desc="data folder (default: nilearn's, e.g. ~/nilearn_data)")


class _FetchLocalizerOutputSpec(TraitedSpec):
    inputs_table = File(exists=True, desc="TSV with subject, condition, path")
    cmaps = traits.List(File(exists=True), desc="contrast maps, table order")
    tmaps = traits.List(File(exists=True), desc="t maps, table order (get_tmaps, variances)")
    variance_files = traits.List(
        File(exists=True), desc="first-level variance maps, table order (variances)")


class FetchLocalizer(SimpleInterface):
    """Fetch Brainomics/Localizer contrast maps (nilearn) into an inputs table.

    With ``variances`` the t maps are fetched too and each map's first-level
    variance (contrast / t)^2 is written beside the table (``variance_path``),
    so one node is the data source of both OLS and variance-weighted analyses.
    """

    input_spec = _FetchLocalizerInputSpec
    output_spec = _FetchLocalizerOutputSpec

    def _run_interface(self, runtime):
        contrasts = list(self.inputs.contrasts)
        conditions = (
            list(self.inputs.conditions)
            if isdefined(self.inputs.conditions)
            else [c.split()[0] for c in contrasts]
        )
        if len(conditions) != len(contrasts):
            raise bad_input(
                "conditions",
                f"{len(conditions)} labels given for {len(contrasts)} contrasts",
            )
        if len(set(conditions)) != len(conditions):
            raise bad_input("conditions", f"labels must differ, got {conditions}")
        subjects = (
            list(self.inputs.subjects)
            if isdefined(self.inputs.subjects)
            else list(range(1, self.inputs.n_subjects + 1))
        )
        data_dir = self.inputs.data_dir if isdefined(self.inputs.data_dir) else None
        get_tmaps = self.inputs.get_tmaps or self.inputs.variances
        table = fetch_localizer_table(contrasts, conditions, subjects, get_tmaps, data_dir)
        out = Path(runtime.cwd)
        if self.inputs.variances:
            table["variance_path"] = write_variance_maps(table, out)
            self._results["variance_files"] = list(table["variance_path"])
        self._results["inputs_table"] = save_tsv(table, out / "inputs.tsv")
        self._results["cmaps"] = list(table["path"])
        if get_tmaps:
            self._results["tmaps"] = list(table["tmap_path"])
        return runtime
