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
from ..io.results_folder import export_results
from ..io.sidecars import sidecar_path


class _DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(mandatory=True, desc="output folder (created if missing)")
    in_files = InputMultiObject(
        File(exists=True), mandatory=True,
        desc="files to export; each keeps its (BIDS-style) base name",
    )
    input_files = traits.List(traits.Str(), usedefault=True,
                              desc="the run's input files (table, maps, mask, design file): "
                              "never removed nor replaced")


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the exported files")


class DerivativesSink(SimpleInterface):
    """Export files into ``out_dir`` under their own names.

    A file's JSON sidecar (same base name, ``.json``, see
    :mod:`nipype_secondlevel.io.sidecars`) is exported with it. The export is
    :func:`~nipype_secondlevel.io.results_folder.export_results`: staged, then renamed
    in; the earlier export's files this one does not write are removed if still as it
    wrote them, and nothing else (never an input). The sink always runs, so results
    come back even if the output folder was emptied while the cache was kept.
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
        pairs = [(f, Path(f).name) for f in sources]
        try:
            self._results["out_files"] = export_results(out_dir, pairs,
                                                        inputs=self.inputs.input_files)
        except OSError as err:
            # (a copy's error names the source, then the destination)
            if not str(err.filename2 or err.filename or out_dir).startswith(str(out_dir)):
                raise  # a source file in the work folder
            # A full, read-only or vanished results folder: one line naming it.
            raise bad_input(f"results folder {out_dir}", f"cannot be written: "
                            f"{err.strerror or err}") from err
        return runtime
