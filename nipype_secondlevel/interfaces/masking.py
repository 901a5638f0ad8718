"""Mask: the group analysis mask."""

import warnings
from pathlib import Path
from typing import NamedTuple

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

from ..io.errors import InputWarning, bad_input
from ..io.files import save_img
from ..io.images import check_same_grid, load_img, read_data
from ..io.sidecars import generated_by, write_sidecar

STRATEGIES = ("nilearn", "mni152", "file", "coverage")


class NonFiniteWarning(InputWarning):
    """Voxels NaN or infinite in some input map were left out of the analysis mask."""


class MapSummary(NamedTuple):
    """What :func:`summarize_maps` learns from one pass over the maps."""

    mean_img: object  # voxelwise mean of the effect maps (NaN where one is NaN)
    coverage: np.ndarray  # fraction of the effect maps finite and non-zero at each voxel
    non_finite: np.ndarray  # NaN or infinite in at least one map (effect or variance)
    with_data: np.ndarray  # finite and non-zero in at least one effect map
    example: str  # the first map with a non-finite voxel (None if there is none)


def summarize_maps(paths, variance_paths=()):
    """Mean, coverage and non-finite voxels of the maps, reading each map once.

    A voxel is valid in a map when it is finite and non-zero. An effect map
    with no valid voxel (all 0, or all NaN) and a variance map with no finite
    value are one-line errors naming the file.
    """
    first = load_img(paths[0], "input map")
    shape, affine = first.shape[:3], first.affine
    total = np.zeros(shape)
    valid = np.zeros(shape)
    non_finite = np.zeros(shape, bool)
    example = None
    maps = [(p, "input map") for p in paths] + [(p, "variance map") for p in variance_paths]
    for path, what in maps:
        img = load_img(path, what)
        check_same_grid(img, shape, affine, path)
        data = read_data(img, path, what).reshape(shape).astype(float)
        finite = np.isfinite(data)
        if not finite.any():
            raise bad_input(f"{what} {path}", "has no finite value (every voxel is NaN or "
                            "infinite)")
        if not finite.all():
            non_finite |= ~finite
            example = example or str(path)
        if what == "input map":
            if not np.any(data[finite]):
                raise bad_input(f"{what} {path}", "is 0 in every voxel (an empty map)"
                                if finite.all() else "is 0 wherever it is not NaN")
            total += data
            valid += finite & (data != 0)
    return MapSummary(nib.Nifti1Image(total / len(paths), affine), valid / len(paths),
                      non_finite, valid > 0, example)


def nilearn_default_mask(mean_img):
    """The mask nilearn's SecondLevelModel computes when given no mask."""
    from nilearn.maskers import NiftiMasker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NiftiMasker().fit(mean_img).mask_img_


def resample_mask(mask_img, reference):
    """Resample a mask to the grid of ``reference`` (nearest neighbour)."""
    from nilearn.image import resample_to_img

    return resample_to_img(
        mask_img, reference, interpolation="nearest",
        force_resample=True, copy_header=True,
    )


class _GroupMaskInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="input maps (all on one grid)"
    )
    strategy = traits.Enum(
        *STRATEGIES,
        usedefault=True,
        desc="nilearn: as SecondLevelModel with no mask (background of the "
        "mean map); mni152: nilearn's MNI152 brain mask; file: mask_file; "
        "coverage: voxels valid in at least `coverage` of the maps",
    )
    variance_files = traits.List(
        File(exists=True), desc="first-level variance maps: their NaN or infinite voxels "
        "leave the mask too")
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

    Whatever the strategy, voxels that are NaN or infinite in any map (effect
    or variance) are left out, with a :class:`NonFiniteWarning` giving their
    number (also in the mask's sidecar, ``NonFiniteVoxelsLeftOut``). A map that
    is 0 (or NaN) everywhere is a one-line error naming it.
    """

    input_spec = _GroupMaskInputSpec
    output_spec = _GroupMaskOutputSpec

    def _run_interface(self, runtime):
        paths = list(self.inputs.in_files)
        variances = (list(self.inputs.variance_files)
                     if isdefined(self.inputs.variance_files) else [])
        strategy = self.inputs.strategy
        # Every strategy reads every map once: non-finite voxels leave the mask.
        summary = summarize_maps(paths, variances)
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
        # Voxels the strategy would analyse, or where a map has data, that are NaN or
        # infinite in some map: left out, and counted.
        left_out = summary.non_finite & (mask | summary.with_data)
        mask &= ~summary.non_finite
        if left_out.any():
            warnings.warn(
                f"{int(left_out.sum())} voxel(s) NaN or infinite in at least one map (e.g. "
                f"{summary.example}) were left out of the analysis mask", NonFiniteWarning,
                stacklevel=2)
        if not mask.any():
            raise bad_input(f"mask ({strategy})", "contains no voxel"
                            + (" once the voxels NaN or infinite in some map are left out"
                               if left_out.any() else ""))
        self._results["n_voxels"] = int(mask.sum())
        self._results["mask_file"] = save_img(
            nib.Nifti1Image(mask.astype(np.uint8), reference.affine),
            Path(runtime.cwd) / "desc-group_mask.nii.gz",
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
            "InputMapCount": len(paths),
            "GeneratedBy": generated_by("mask"),
        })
        return runtime
