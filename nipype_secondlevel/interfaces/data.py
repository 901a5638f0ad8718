"""MaskedData: the input maps' in-mask values, written once for every node that needs them;
StackMaskedData: blocks of them (read in parallel) stacked into one file; MaskedDataFromRows:
the same file from the maps' values the mask's pass wrote (the maps read once)."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..io.images import load_mask
from ..io.masked_data import (
    masked_data_shape,
    stack_masked_data,
    write_masked_data,
    write_masked_data_from_rows,
)

DATA_FILE_NAME = "masked_data.npy"


class _MaskedDataInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="input maps, in the design's row order"
    )
    mask_file = File(exists=True, mandatory=True, desc="analysis mask (the maps' grid)")
    positive = traits.Bool(
        False, usedefault=True,
        desc="first-level variance maps: every in-mask value must be above 0 (else a "
        "one-line error naming the map)",
    )


class _MaskedDataOutputSpec(TraitedSpec):
    data_file = File(
        exists=True,
        desc="(n_maps, n_voxels) float32 .npy, uncompressed: rows in in_files order, "
        "columns the mask's voxels in C order; read voxel chunks with "
        "nipype_secondlevel.io.iter_voxel_chunks (or np.load(mmap_mode='r'))",
    )
    n_maps = traits.Int(desc="number of rows (maps)")
    n_voxels = traits.Int(desc="number of columns (voxels in the mask)")


class _StackMaskedDataInputSpec(BaseInterfaceInputSpec):
    row_files = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="MaskedData files of consecutive blocks of maps, in row order",
    )


class MaskedData(SimpleInterface):
    """Read the maps one at a time and write their masked values as one ``.npy``.

    This is the only copy of the input data in the work folder: estimation,
    contrasts and permutations read voxel chunks of it, so their memory is set by
    the chunk size, not by the number of maps. Memory here is one map. A
    workflow reads large samples as a MapNode over blocks of maps and stacks the
    blocks with :class:`StackMaskedData`.
    """

    input_spec = _MaskedDataInputSpec
    output_spec = _MaskedDataOutputSpec

    def _run_interface(self, runtime):
        mask, mask_img = load_mask(self.inputs.mask_file)
        paths = list(self.inputs.in_files)
        self._results["data_file"] = write_masked_data(
            paths, mask, mask_img.affine, Path(runtime.cwd) / DATA_FILE_NAME,
            positive=self.inputs.positive,
        )
        self._results["n_maps"] = len(paths)
        self._results["n_voxels"] = int(mask.sum())
        return runtime


class StackMaskedData(SimpleInterface):
    """Stack blocks of masked data (MaskedData files of consecutive maps) into one file.

    The result is byte for byte the file MaskedData writes from all the maps
    at once; the rows are copied in pieces (a single block is hard-linked), so
    memory does not grow with the number of maps.
    """

    input_spec = _StackMaskedDataInputSpec
    output_spec = _MaskedDataOutputSpec

    def _run_interface(self, runtime):
        path = stack_masked_data(list(self.inputs.row_files),
                                 Path(runtime.cwd) / DATA_FILE_NAME)
        self._results["data_file"] = path
        self._results["n_maps"], self._results["n_voxels"] = masked_data_shape(path)
        return runtime


class _MaskedDataFromRowsInputSpec(BaseInterfaceInputSpec):
    rows_files = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="SummarizeMaps rows files (map_rows) of consecutive blocks of maps, in order")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask (the maps' grid)")


class MaskedDataFromRows(SimpleInterface):
    """The masked data file MaskedData and StackMaskedData write (the same bytes), from
    the maps' values written by the mask's pass over them (:class:`SummarizeMaps` with
    ``map_rows``): the maps are not read again. Memory is one map."""

    input_spec = _MaskedDataFromRowsInputSpec
    output_spec = _MaskedDataOutputSpec

    def _run_interface(self, runtime):
        mask, mask_img = load_mask(self.inputs.mask_file)
        path = write_masked_data_from_rows(list(self.inputs.rows_files), mask,
                                           mask_img.affine, Path(runtime.cwd) / DATA_FILE_NAME)
        self._results["data_file"] = path
        self._results["n_maps"], self._results["n_voxels"] = masked_data_shape(path)
        return runtime
