"""AnatomicalLabels: region names for the peaks and sub-peaks of a cluster table."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..io.files import save_tsv
from ..io.sidecars import generated_by, read_sidecar, source_fields, write_sidecar
from ..io.tables import read_table
from ..reporting.anatomy import label_clusters, load_atlas
from ..spec import ATLASES, DEFAULTS


class _AnatomicalLabelsInputSpec(BaseInterfaceInputSpec):
    cluster_table = File(exists=True, mandatory=True,
                         desc="cluster table (TSV with X, Y, Z in MNI mm, as nilearn's)")
    atlases = traits.List(
        traits.Enum(*ATLASES), value=list(DEFAULTS["atlases"]), usedefault=True,
        desc=f"atlases, one column each; choices: {', '.join(ATLASES)}",
    )
    min_probability = traits.Range(
        low=0.0, high=100.0, value=5.0, usedefault=True,
        desc="probabilistic atlases: regions of at least this probability (percent)",
    )


class _AnatomicalLabelsOutputSpec(TraitedSpec):
    cluster_table = File(exists=True, desc="the table with one region column per atlas "
                         "(same file name as the input)")


class AnatomicalLabels(SimpleInterface):
    """Add region names (one column per atlas) to every row of a cluster table."""

    input_spec = _AnatomicalLabelsInputSpec
    output_spec = _AnatomicalLabelsOutputSpec

    def _run_interface(self, runtime):
        source = self.inputs.cluster_table
        table = label_clusters(read_table(source, "cluster table", allow_no_rows=True),
                               self.inputs.atlases,
                               self.inputs.min_probability)
        out = save_tsv(table, Path(runtime.cwd) / Path(source).name)  # the sink names it
        # The table's own sidecar (e.g. the correction of a permutation test) is kept.
        kept = read_sidecar(source)
        description = kept.get("Description", "clusters, peaks and sub-peaks")
        kept = {k: v for k, v in kept.items()
                if k not in ("Description", "Sources", "SourceFiles", "GeneratedBy")}
        write_sidecar(out, {
            **kept,
            "Description": f"{description}, with anatomical labels",
            "Atlases": {name: {"Description": ATLASES[name][0],
                               "Source": load_atlas(name).source,
                               "Probabilistic": ATLASES[name][1]}
                        for name in self.inputs.atlases},
            "MinimumProbability": self.inputs.min_probability,
            **source_fields([source]),
            "GeneratedBy": generated_by("anatomical_labels"),
        })
        self._results["cluster_table"] = out
        return runtime
