"""Plot: a glass brain of a statistical map, as in nilearn's example."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.images import load_img
from ..reporting.figures import plot_glass_brain
from ..spec import DEFAULTS


class _GlassBrainInputSpec(BaseInterfaceInputSpec):
    stat_map = File(exists=True, mandatory=True, desc="map to draw (e.g. the z map)")
    threshold = traits.Float(DEFAULTS["threshold"], usedefault=True,
                             desc="values with |v| below are hidden")
    contrast_name = traits.Str("contrast", usedefault=True, desc="label for the title")
    title = traits.Str(desc="title drawn on the picture (default: label and threshold)")


class _GlassBrainOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="glass brain PNG")


class GlassBrain(SimpleInterface):
    """Glass brain with colour bar and signed values (``plot_abs=False``)."""

    input_spec = _GlassBrainInputSpec
    output_spec = _GlassBrainOutputSpec

    def _run_interface(self, runtime):
        label = self.inputs.contrast_name
        title = (
            self.inputs.title
            if isdefined(self.inputs.title)
            else f"{label}: |z| > {self.inputs.threshold:.2f}"
        )
        self._results["out_file"] = plot_glass_brain(
            load_img(self.inputs.stat_map, "statistical map"),
            Path(runtime.cwd) / "glassbrain.png",
            self.inputs.threshold,
            title,
        )
        return runtime
