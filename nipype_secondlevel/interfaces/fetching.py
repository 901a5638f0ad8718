"""Fetch: the Brainomics/Localizer contrast maps through nilearn."""

from pathlib import Path

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

from ..errors import bad_input
from ..io import save_tsv

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


def fetch_localizer_table(contrasts, conditions, subjects, get_tmaps, data_dir=None):
    """Fetch maps with nilearn and return the inputs table.

    Files already in the data folder are used as they are, with no network.
    Columns: subject, condition, path (contrast map) and, with ``get_tmaps``,
    tmap_path.
    """
    from nilearn.datasets import fetch_localizer_contrasts
    from nilearn.datasets.func import ALLOWED_CONTRASTS, CONTRAST_NAME_WRAPPER

    for contrast in contrasts:
        if contrast not in ALLOWED_CONTRASTS and contrast not in CONTRAST_NAME_WRAPPER:
            raise bad_input(
                f"contrast {contrast!r}", "is not a Brainomics/Localizer contrast"
            )
    rows = []
    for contrast, condition in zip(contrasts, conditions):
        try:
            bunch = fetch_localizer_contrasts(
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
    data_dir = Directory(desc="data folder (default: nilearn's, e.g. ~/nilearn_data)")


class _FetchLocalizerOutputSpec(TraitedSpec):
    inputs_table = File(exists=True, desc="TSV with subject, condition, path")
    cmaps = traits.List(File(exists=True), desc="contrast maps, table order")
    tmaps = traits.List(File(exists=True), desc="t maps, table order (get_tmaps)")


class FetchLocalizer(SimpleInterface):
    """Fetch Brainomics/Localizer contrast maps (nilearn) into an inputs table."""

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
        table = fetch_localizer_table(
            contrasts, conditions, subjects, self.inputs.get_tmaps, data_dir
        )
        self._results["inputs_table"] = save_tsv(
            table, Path(runtime.cwd) / "inputs.tsv"
        )
        self._results["cmaps"] = list(table["path"])
        if self.inputs.get_tmaps:
            self._results["tmaps"] = list(table["tmap_path"])
        return runtime
