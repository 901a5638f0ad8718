"""Mask: the group analysis mask."""

import warnings
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
from ..io.images import check_same_grid, load_img
from ..io.sidecars import generated_by, write_sidecar

STRATEGIES = ("nilearn", "mni152", "file", "coverage")


def mean_and_coverage(paths):
    """Voxelwise mean of the maps and the fraction in which each voxel is valid.

    A voxel is valid in a map when it is finite and non-zero. Maps are read
    one at a time. Returns (mean image, coverage array).
    """
    first = load_img(paths[0], "input map")
    shape, affine = first.shape[:3], first.affine
    total = np.zeros(shape)
    valid = np.zeros(shape)
    for path in paths:
        img = load_img(path, "input map")
        check_same_grid(img, shape, affine, path)
        data = np.asanyarray(img.dataobj).reshape(shape).astype(float)
        total += data
        valid += np.isfinite(data) & (data != 0)
    return nib.Nifti1Image(total / len(paths), affine), valid / len(paths)


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
    """Compute the group analysis mask on the grid of the input maps."""

    input_spec = _GroupMaskInputSpec
    output_spec = _GroupMaskOutputSpec

    def _run_interface(self, runtime):
        paths = list(self.inputs.in_files)
        strategy = self.inputs.strategy
        if strategy in ("nilearn", "coverage"):
            reference, coverage = mean_and_coverage(paths)
        else:  # only the maps' grid is needed: read one header, not every map
            first = load_img(paths[0], "input map")
            reference = nib.Nifti1Image(np.zeros(first.shape[:3], np.uint8), first.affine)
        if strategy == "nilearn":
            mask = np.asarray(nilearn_default_mask(reference).dataobj) > 0
        elif strategy == "coverage":
            mask = coverage >= self.inputs.coverage - 1e-12
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
        if not mask.any():
            raise bad_input(f"mask ({strategy})", "contains no voxel")
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
            "InputMapCount": len(paths),
            "GeneratedBy": generated_by("mask"),
        })
        return runtime
