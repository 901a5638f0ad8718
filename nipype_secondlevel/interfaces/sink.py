"""Sink: copy results into the output folder, each file atomically."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..io.errors import bad_input
from ..io.files import copy_file, remove_stale_parts
from ..io.results_folder import finish_export, start_export
from ..io.sidecars import sidecar_path


class _DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(mandatory=True, desc="output folder (created if missing)")
    in_files = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="files to export; each keeps its (BIDS-style) base name",
    )


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the exported files")


class DerivativesSink(SimpleInterface):
    """Export files into ``out_dir`` under their own names.

    Each file is written to a temporary name in ``out_dir`` and renamed, so no
    file there is ever half-written. A file's JSON sidecar (same base name,
    ``.json``, see :mod:`nipype_secondlevel.io.sidecars`) is exported with it.
    The sink always runs, so results come back even if the output folder was
    emptied while the cache was kept. The folder's manifest
    (:mod:`nipype_secondlevel.io.results_folder`) lists the exported files; files
    an earlier export listed that this one does not write are removed, so the
    folder holds this run's results only.
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        out_dir = Path(self.inputs.out_dir)
        # A file given twice (e.g. a map that is also in a list of maps) is exported once.
        sources = list(dict.fromkeys(str(f) for f in self.inputs.in_files))
        sources += [s for s in dict.fromkeys(str(sidecar_path(f)) for f in sources)
                    if s not in sources and Path(s).exists()]
        names = [Path(f).name for f in sources]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"two results share the name {min(duplicates)}")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            # Temporary files of an export that was killed before its rename.
            remove_stale_parts(out_dir, names)
            start_export(out_dir, names)
            self._results["out_files"] = [
                copy_file(src, out_dir / name)
                for src, name in zip(sources, names)
            ]
            # What an earlier export wrote and this one did not is not this run's result.
            finish_export(out_dir, names)
        except OSError as err:
            # (a copy's error names the source, then the destination)
            if not str(err.filename2 or err.filename or out_dir).startswith(str(out_dir)):
                raise  # a source file in the work folder
            # A full, read-only or vanished results folder: one line naming it.
            raise bad_input(f"results folder {out_dir}", f"cannot be written: "
                            f"{err.strerror or err}") from err
        return runtime
