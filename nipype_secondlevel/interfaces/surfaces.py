"""The read and write ends of a surface or CIFTI analysis (see :mod:`..io.domains`).

DomainMaps reads every map (a GIFTI pair, a CIFTI file) into the (n, 1, 1) grid image
the volume's nodes read; DomainMask is the analysis mask over the domain's elements;
WriteDomainMaps writes grid images back as GIFTI pairs or CIFTI files with their
sidecars; DomainClusters thresholds clusters on the domain's neighbour graph and
tabulates them (vertices and mm^2). (SurfacePicture, in :mod:`.plotting`, draws a map
on the surfaces.)
"""

import warnings
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.domains import as_grid_image, from_grid_image, load_domain, read_map
from ..io.errors import bad_input
from ..io.files import save_img, save_tsv
from ..io.masks import CoverageWarning, NonFiniteWarning
from ..io.sidecars import generated_by, read_sidecar, source_fields, write_sidecar
from ..io.surfaces import element_mask
from ..reporting.surface import (
    PEAK_LOCATION,
    surface_cluster_table,
    surface_clusters,
)
from ..spec import DEFAULTS
from ..stats.missing import missing_values

_DOMAIN_DESC = "the data domain (nipype_secondlevel.io.domains.domain_value)"


class _DomainMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="input maps (either file of a GIFTI pair, or CIFTI)")
    variance_files = traits.List(File(exists=True), desc="first-level variance maps")
    domain = traits.Dict(mandatory=True, desc=_DOMAIN_DESC)


class _DomainMapsOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="(n, 1, 1) grid images, in order")
    variance_files = traits.List(File(exists=True), desc="the variance maps, likewise")
    resampled = traits.List(traits.Str, desc="none: surface maps are never resampled")


class DomainMaps(SimpleInterface):
    """Every map of the domain as the (n_elements, 1, 1) grid image of its values."""

    input_spec = _DomainMapsInputSpec
    output_spec = _DomainMapsOutputSpec

    def _run_interface(self, runtime):
        domain = load_domain(self.inputs.domain)
        out = Path(runtime.cwd)
        lists = {"out_files": ("map", "input map", self.inputs.in_files),
                 "variance_files": ("variance", "variance map",
                                    self.inputs.variance_files
                                    if isdefined(self.inputs.variance_files) else [])}
        for field, (stem, what, paths) in lists.items():
            self._results[field] = [
                save_img(as_grid_image(read_map(domain, path, what)),
                         out / f"{stem}{i:05d}_{Path(path).name}.nii")  # errors name the map
                for i, path in enumerate(paths)]
        self._results["resampled"] = []
        return runtime


class _DomainMaskInputSpec(_DomainMapsInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="grid images of the maps and (variance_files) of the "
                                "variances (DomainMaps)")
    min_present = traits.Range(
        low=1, value=1, usedefault=True,
        desc="fewest maps with a value present at an element of the mask (the rule of "
        "nipype_secondlevel.stats.missing)")
    why = traits.Str("--min-subjects, --min-coverage", usedefault=True,
                     desc="what sets min_present (in the warning)")
    zeros_without_variance = traits.Bool(
        False, usedefault=True, desc="an exact 0 in a map without a variance map is missing")


class _DomainMaskOutputSpec(TraitedSpec):
    mask_file = File(exists=True, desc="the analysis mask as a grid image (uint8)")
    n_voxels = traits.Int(desc="number of elements in the mask")


class DomainMask(SimpleInterface):
    """The elements analysed: the domain's support (fsaverage5: off the medial wall)
    where at least ``min_present`` maps have a value (not missing: NaN, or 0 with a
    variance of 0 or NaN, :func:`~nipype_secondlevel.stats.missing.missing_values`) and
    no map or variance is infinite. Elements infinite in some map, or with too few maps,
    are left out with a warning giving their number."""

    input_spec = _DomainMaskInputSpec
    output_spec = _DomainMaskOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        domain = load_domain(inputs.domain)
        variances = (list(inputs.variance_files) if isdefined(inputs.variance_files)
                     else [None] * len(inputs.in_files))
        present = np.zeros(domain.n_elements, dtype=int)
        infinite = np.zeros(domain.n_elements, dtype=bool)
        for path, variance_path in zip(inputs.in_files, variances):
            values = from_grid_image(path)
            variance = None if variance_path is None else from_grid_image(variance_path)
            present += ~missing_values(values, variance, inputs.zeros_without_variance)
            infinite |= np.isinf(values) | (False if variance is None else np.isinf(variance))
        support = domain.support()
        left_out = support & infinite
        if left_out.any():
            warnings.warn(f"{int(left_out.sum())} element(s) infinite in at least one map "
                          "were left out of the analysis mask", NonFiniteWarning,
                          stacklevel=2)
        too_few = support & ~infinite & (present > 0) & ~element_mask(
            support, present, inputs.min_present)
        if too_few.any():
            warnings.warn(f"{int(too_few.sum())} element(s) where fewer than "
                          f"{inputs.min_present} maps have a value were left out of the "
                          f"analysis mask ({inputs.why})", CoverageWarning, stacklevel=2)
        mask = element_mask(support, present, inputs.min_present) & ~infinite
        if not mask.any():
            raise bad_input("mask", f"contains no element: no vertex or voxel has a value in "
                            f"at least {inputs.min_present} maps ({inputs.why})")
        path = save_img(as_grid_image(mask.astype(np.uint8)), Path(runtime.cwd) / "mask.nii")
        write_sidecar(path, {
            "Type": "Brain",
            "Description": "analysis mask: the elements analysed (1) and left out (0): the "
                           f"domain's support where at least {inputs.min_present} maps have "
                           "a value and none is infinite",
            "ElementCount": int(mask.sum()),
            "NonFiniteElementsLeftOut": int(left_out.sum()),
            "MinimumMapsPresent": int(inputs.min_present),
            "TooFewMapsElementsLeftOut": int(too_few.sum()),
            "InputMapCount": len(inputs.in_files),
            "GeneratedBy": generated_by("mask"),
        })
        self._results["mask_file"] = path
        self._results["n_voxels"] = int(mask.sum())
        return runtime


class _WriteDomainMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="grid images (<name>.nii.gz or .nii) with sidecars")
    domain = traits.Dict(mandatory=True, desc=_DOMAIN_DESC)


class _WriteDomainMapsOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="hemi-L_<name>.func.gii and hemi-R_... "
                            "(surface) or <name>.dscalar.nii (CIFTI), each with a sidecar")


def grid_stem(path):
    """A grid image's name without its extension (``z.nii.gz`` -> ``z``)."""
    name = Path(path).name
    return name[:-len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def write_domain_map(domain, values, folder, stem, fields):
    """Write ``values`` on the domain as ``stem`` with the sidecar ``fields`` (and the
    domain's description); returns the paths."""
    written = domain.write(values, folder, stem, fields.get("Description"))
    written = [written] if isinstance(written, str) else written
    for path in written:
        write_sidecar(path, {**fields, "SpatialReference": domain.describe()})
    return written


class WriteDomainMaps(SimpleInterface):
    """Grid images written back on the domain, each with its sidecar (and the domain's
    description as ``SpatialReference``)."""

    input_spec = _WriteDomainMapsInputSpec
    output_spec = _WriteDomainMapsOutputSpec

    def _run_interface(self, runtime):
        domain = load_domain(self.inputs.domain)
        self._results["out_files"] = [
            path for grid in self.inputs.in_files
            for path in write_domain_map(domain, from_grid_image(grid), runtime.cwd,
                                         grid_stem(grid), read_sidecar(grid))]
        return runtime


class _DomainClustersInputSpec(BaseInterfaceInputSpec):
    map_file = File(exists=True, mandatory=True,
                    desc="grid image of a thresholded z map (0 below the threshold)")
    domain = traits.Dict(mandatory=True, desc=_DOMAIN_DESC)
    two_sided = traits.Bool(True, usedefault=True, desc="negative clusters too")
    cluster_size = traits.Int(DEFAULTS["cluster_size"], usedefault=True,
                              desc="smaller clusters (elements) are set to 0")
    logp_file = File(exists=True, desc="grid image of -log10 FWER p: its value at each "
                     "peak is the table's p_column")
    p_column = traits.Str("Peak FWER p", usedefault=True, desc="name of the p column")


class _DomainClustersOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the map on the domain (as its stem)")
    grid_file = File(exists=True, desc="the map kept, as a grid image (for pictures)")
    cluster_table = File(exists=True, desc="clusters: structure, peak, size, area (TSV)")


class DomainClusters(SimpleInterface):
    """Clusters of a thresholded map (its non-zero elements of each sign) on the domain's
    neighbour graph: those smaller than
    ``cluster_size`` elements set to 0, the map written on the domain, the table of the
    clusters (peak element, hemisphere or structure, size in elements, area in mm^2,
    peak position on the mesh)."""

    input_spec = _DomainClustersInputSpec
    output_spec = _DomainClustersOutputSpec

    def _run_interface(self, runtime):
        domain = load_domain(self.inputs.domain)
        inputs = self.inputs
        values = from_grid_image(inputs.map_file)
        fields = read_sidecar(inputs.map_file)
        if inputs.cluster_size > 1:
            kept = np.zeros(values.size, dtype=bool)
            for members in surface_clusters(values, domain, 0.0, inputs.two_sided):
                kept[members] = members.size >= inputs.cluster_size
            values = np.where(kept, values, 0.0)
            threshold = dict(fields.get("Threshold") or {})
            threshold.pop("ClusterSizeVoxels", None)
            threshold["ClusterSizeElements"] = int(inputs.cluster_size)
            threshold["Description"] = (f"{threshold.get('Description', '')}, clusters of at "
                                        f"least {inputs.cluster_size} elements (vertices or "
                                        "voxels) on the domain's neighbour graph")
            fields["Threshold"] = threshold
        table = surface_cluster_table(values, domain, 0.0, inputs.two_sided)
        if isdefined(inputs.logp_file):
            logp = from_grid_image(inputs.logp_file)
            peaks = _peak_elements(values, domain, inputs.two_sided)
            table[inputs.p_column] = 10.0 ** -logp[peaks] if len(peaks) else []
        out = Path(runtime.cwd)
        self._results["grid_file"] = save_img(as_grid_image(values), out / "kept.nii")
        write_sidecar(self._results["grid_file"], fields)
        self._results["out_files"] = write_domain_map(domain, values, out,
                                                      grid_stem(inputs.map_file), fields)
        self._results["cluster_table"] = save_tsv(table, out / f"{grid_stem(inputs.map_file)}"
                                                  "_clusters.tsv")
        write_sidecar(self._results["cluster_table"], {
            "Description": "clusters of the map on the domain's neighbour graph: peak "
                           "element, size (elements), area (mm2), peak position (mm)",
            "Threshold": fields.get("Threshold"),
            **PEAK_LOCATION,
            "SpatialReference": domain.describe(),
            **source_fields([inputs.map_file]),
            "GeneratedBy": generated_by("clusters"),
        })
        return runtime


def _peak_elements(values, domain, two_sided):
    """The peak element of every cluster in the order of :func:`surface_cluster_table`."""
    peaks = np.array([c[np.argmax(np.abs(values[c]))]
                      for c in surface_clusters(values, domain, 0.0, two_sided)],
                     dtype=np.int64)
    return peaks[np.argsort(-np.abs(values[peaks]), kind="stable")]
