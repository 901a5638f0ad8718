"""Pictures of a statistical map: a glass brain, as in nilearn's example, and the
cortical surfaces' views of a surface or CIFTI map."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.domains import from_grid_image, load_domain
from ..io.images import load_img
from ..reporting.figures import plot_glass_brain
from ..reporting.surface import plot_surface_map
from ..spec import DEFAULTS


class PictureInputSpec(BaseInterfaceInputSpec):
    """What every picture of a map takes: the map, its threshold and its title."""

    stat_map = File(exists=True, mandatory=True, desc="map to draw (e.g. the z map)")
    threshold = traits.Float(DEFAULTS["threshold"], usedefault=True,
                             desc="values with |v| below are hidden")
    contrast_name = traits.Str("contrast", usedefault=True, desc="label for the title")
    title = traits.Str(desc="title drawn on the picture (default: label and threshold)")


def picture_title(inputs):
    """The title a picture gets: the one given, else the label and the threshold."""
    if isdefined(inputs.title):
        return inputs.title
    return f"{inputs.contrast_name}: |z| > {inputs.threshold:.2f}"


class _GlassBrainOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="glass brain PNG")


class GlassBrain(SimpleInterface):
    """Glass brain with colour bar and signed values (``plot_abs=False``)."""

    input_spec = PictureInputSpec
    output_spec = _GlassBrainOutputSpec

    def _run_interface(self, runtime):
        self._results["out_file"] = plot_glass_brain(
            load_img(self.inputs.stat_map, "statistical map"),
            Path(runtime.cwd) / "glassbrain.png",
            self.inputs.threshold,
            picture_title(self.inputs),
        )
        return runtime


class _SurfacePictureInputSpec(PictureInputSpec):
    domain = traits.Dict(mandatory=True, desc="the data domain (io.domains.domain_value)")


class _SurfacePictureOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="lateral and medial views of both hemispheres (PNG)")


class SurfacePicture(SimpleInterface):
    """A map on the cortical surfaces: lateral and medial views of both hemispheres."""

    input_spec = _SurfacePictureInputSpec
    output_spec = _SurfacePictureOutputSpec

    def _run_interface(self, runtime):
        title = picture_title(self.inputs)
        self._results["out_file"] = plot_surface_map(
            from_grid_image(self.inputs.stat_map), load_domain(self.inputs.domain),
            Path(runtime.cwd) / "surfaces.png", threshold=self.inputs.threshold or None,
            title=title)
        return runtime
