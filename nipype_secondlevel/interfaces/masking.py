"""SummarizeMaps: one pass over a block of maps (run in parallel over blocks); GroupMask:
the group analysis mask, from the maps or from their blocks' summaries."""

import warnings
from functools import partial
from pathlib import Path

import nibabel as nib
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

from ..io.errors import bad_input
from ..io.files import save_img
from ..io.images import keep_units, load_img
from ..io.masks import (
    CoverageWarning,
    NonFiniteWarning,
    merge_summaries,
    nilearn_default_mask,
    read_summary,
    resample_mask,
    summarize_maps,
    write_summary,
)
from ..io.sidecars import generated_by, source_fields, write_sidecar
from ..spec import MASK_STRATEGIES
from ..stats.missing import missing_values

#: --mask-strategy, and "file" for --mask.
STRATEGIES = (*MASK_STRATEGIES, "file")


class _SummarizeMapsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="input maps (all on one grid)"
    )
    variance_files = traits.List(
        File(exists=True), desc="first-level variance maps, one per map: their infinite "
        "voxels leave the mask too; with the maps they say where a value is missing")
    zeros_without_variance = traits.Bool(
        False, usedefault=True, desc="an exact 0 in a map without a variance map is missing")
    map_rows = traits.Bool(False, usedefault=True, desc="also write the maps' values "
                           "(rows_file), so that the masked data need not read them again")


class _SummarizeMapsOutputSpec(TraitedSpec):
    summary_file = File(exists=True, desc="the maps' sum, coverage and non-finite voxels "
                        "(.npz, read by GroupMask)")
    rows_file = File(exists=True, desc="with map_rows: the maps' non-zero values (read by "
                     "MaskedDataFromRows once the mask is known)")


class SummarizeMaps(SimpleInterface):
    """Read a block of maps once: their sum, the number valid (finite and non-zero) and
    present (:func:`~nipype_secondlevel.stats.missing.missing_values`) at each voxel and
    the voxels infinite in any of them (effect or variance). A
    workflow runs it as a MapNode over blocks of maps and gives the summaries to
    :class:`GroupMask`."""

    input_spec = _SummarizeMapsInputSpec
    output_spec = _SummarizeMapsOutputSpec

    def _run_interface(self, runtime):
        variances = (list(self.inputs.variance_files)
                     if isdefined(self.inputs.variance_files) else [])
        rows = Path(runtime.cwd) / "map_rows.bin" if self.inputs.map_rows else None
        self._results["summary_file"] = write_summary(
            summarize_maps(list(self.inputs.in_files), variances, missing=partial(
                missing_values, zeros_without_variance=self.inputs.zeros_without_variance),
                rows_file=rows),
            Path(runtime.cwd) / "map_summary.npz")
        if rows is not None:
            self._results["rows_file"] = str(rows)
        return runtime


class _GroupMaskInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, xor=["summary_files"],
        desc="input maps (all on one grid); or summary_files",
    )
    summary_files = InputMultiObject(
        File(exists=True), mandatory=True, xor=["in_files"],
        desc="SummarizeMaps files of consecutive blocks of the maps (instead of in_files)",
    )
    strategy = traits.Enum(
        *STRATEGIES,
        usedefault=True,
        desc="nilearn: as SecondLevelModel with no mask (background of the "
        "mean map); mni152: nilearn's MNI152 brain mask; file: mask_file; "
        "coverage: voxels valid in at least `coverage` of the maps",
    )
    variance_files = traits.List(
        File(exists=True), desc="first-level variance maps, one per map: their infinite "
        "voxels leave the mask too; with the maps they say where a value is missing")
    min_present = traits.Range(
        low=1, value=1, usedefault=True,
        desc="fewest maps with a value present at a voxel of the mask (missing values: "
        "NaN, or 0 with a variance of 0 or NaN)")
    sources = traits.List(traits.Str, desc="the maps the mask is made from (its sidecar's "
                          "Sources; the first is its SpatialReference)")
    why = traits.Str("--min-subjects, --min-coverage", usedefault=True,
                     desc="what sets min_present (in the warning)")
    mask_file = File(exists=True, desc="a mask image (strategy 'file')")
    coverage = traits.Range(
        low=0.0, high=1.0, value=1.0, usedefault=True,
        desc="fraction of maps in which a voxel must be finite and non-zero "
        "(strategy 'coverage')",
    )


class _GroupMaskOutputSpec(TraitedSpec):
    mask_file = File(exists=True, desc="the group mask (uint8, the maps' grid)")
    n_voxels = traits.Int(desc="number of voxels in the mask")


class GroupMask(SimpleInterface):
    """Compute the group analysis mask on the grid of the input maps.

    The maps are read once, from ``in_files`` here, or in blocks by
    :class:`SummarizeMaps` (``summary_files``). Whatever the strategy, voxels that
    are infinite in any map (effect or variance) are left out, with a
    :class:`NonFiniteWarning` giving their number (also in the mask's sidecar,
    ``NonFiniteVoxelsLeftOut``), and so are voxels where fewer than ``min_present``
    maps have a value (NaN is a missing value), with a :class:`CoverageWarning`
    (``TooFewMapsVoxelsLeftOut``). A map that
    is 0 (or NaN) everywhere is a one-line error naming it.
    """

    input_spec = _GroupMaskInputSpec
    output_spec = _GroupMaskOutputSpec

    def _run_interface(self, runtime):
        strategy = self.inputs.strategy
        # Every strategy reads every map once: non-finite voxels leave the mask.
        if isdefined(self.inputs.summary_files):
            summary = merge_summaries([read_summary(f) for f in self.inputs.summary_files])
        else:
            variances = (list(self.inputs.variance_files)
                         if isdefined(self.inputs.variance_files) else [])
            summary = summarize_maps(list(self.inputs.in_files), variances,
                                     missing=missing_values)
        reference = summary.mean_img
        if strategy == "nilearn":
            mask = np.asarray(nilearn_default_mask(reference).dataobj) > 0
        elif strategy == "coverage":
            mask = summary.coverage >= self.inputs.coverage - 1e-12
        else:
            if strategy == "file":
                if not isdefined(self.inputs.mask_file):
                    raise bad_input("mask_file", "required with strategy 'file'")
                source = load_img(self.inputs.mask_file, "mask")
            else:
                from nilearn.datasets import load_mni152_brain_mask

                source = load_mni152_brain_mask()
            if source.ndim != 3:
                raise bad_input("mask", f"expected a 3D image, got shape {source.shape}")
            mask = np.asarray(resample_mask(source, reference).dataobj) > 0
        # Voxels the strategy would analyse, or where a map has data, that are
        # infinite in some map: left out, and counted.
        left_out = summary.non_finite & (mask | summary.with_data)
        mask &= ~summary.non_finite
        if left_out.any():
            warnings.warn(
                f"{int(left_out.sum())} voxel(s) infinite in at least one map (e.g. "
                f"{summary.example}) were left out of the analysis mask", NonFiniteWarning,
                stacklevel=2)
        too_few = mask & (summary.present < self.inputs.min_present)
        mask &= ~too_few
        too_few &= summary.present > 0
        if too_few.any():
            warnings.warn(
                f"{int(too_few.sum())} voxel(s) where fewer than {self.inputs.min_present} "
                f"maps have a value were left out of the analysis mask ({self.inputs.why})",
                CoverageWarning, stacklevel=2)
        if not mask.any():
            raise bad_input(f"mask ({strategy})", "contains no voxel"
                            + (" once the voxels NaN or infinite in some map are left out"
                               if left_out.any() else ""))
        self._results["n_voxels"] = int(mask.sum())
        self._results["mask_file"] = save_img(  # the maps' units (mm, s) if they say them
            keep_units(nib.Nifti1Image(mask.astype(np.uint8), reference.affine),
                       load_img(summary.first, "input map")),
            Path(runtime.cwd) / "mask.nii.gz",
        )
        write_sidecar(self._results["mask_file"], {
            "Type": "Brain",
            "Description": "analysis mask: the voxels analysed (1) and left out (0)",
            "MaskStrategy": strategy,
            **({"Coverage": float(self.inputs.coverage)} if strategy == "coverage" else {}),
            **({"MaskFile": str(Path(self.inputs.mask_file).absolute())}
               if strategy == "file" else {}),
            "VoxelCount": int(mask.sum()),
            "NonFiniteVoxelsLeftOut": int(left_out.sum()),
            "MinimumMapsPresent": int(self.inputs.min_present),
            "TooFewMapsVoxelsLeftOut": int(too_few.sum()),
            "InputMapCount": summary.n_maps,
            **({**source_fields(self.inputs.sources),
                "SpatialReference": str(Path(self.inputs.sources[0]).absolute())}
               if isdefined(self.inputs.sources) and self.inputs.sources else {}),
            "GeneratedBy": generated_by("mask"),
        })
        return runtime
