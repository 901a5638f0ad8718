"""Fetch: the Brainomics/Localizer contrast maps through nilearn."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..datasets.localizer import fetch_localizer_table, write_variance_maps
from ..io.errors import bad_input
from ..io.files import save_tsv
from ..spec import DEFAULTS


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
        low=1, high=94, value=DEFAULTS["n_subjects"], usedefault=True,
        xor=["subjects"],
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
