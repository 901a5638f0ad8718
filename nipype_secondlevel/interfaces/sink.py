"""Sink: copy results into the output folder under the names of the naming table, each
file atomically."""

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    DynamicTraitedSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.interfaces.io import add_traits

from ..io.errors import bad_input
from ..io.files import write_json
from ..io.naming import exported_sources, named_files
from ..io.results_folder import export_results
from ..io.sidecars import sidecar_path


class _DerivativesSinkInputSpec(DynamicTraitedSpec, BaseInterfaceInputSpec):
    out_dir = Directory(mandatory=True, desc="output folder (created if missing)")
    names = traits.Dict(
        traits.Str, traits.Any, mandatory=True,
        desc="export -> its name rule(s) (see nipype_secondlevel.io.naming); each export is "
        "an input of this node, connected to the output it names")
    input_files = traits.List(traits.Str(), usedefault=True,
                              desc="the run's input files (table, maps, mask, design file): "
                              "never removed nor replaced")


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the exported files")


class DerivativesSink(SimpleInterface):
    """Export files into ``out_dir`` under the names the builder gives them.

    Every key of ``names`` is an input (a file, a list of files, or a MapNode's list of
    them), named by its rule (:func:`~nipype_secondlevel.io.naming.named_files`; a file
    without a name is an error). A file's JSON sidecar is exported with it, its
    ``Sources`` naming the exported files it was made from. The export is
    :func:`~nipype_secondlevel.io.results_folder.export_results`: staged, then renamed
    in; the earlier export's files this one does not write are removed if still as it
    wrote them, and nothing else (never an input). The sink always runs, so results
    come back even if the output folder was emptied while the cache was kept.
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec
    _always_run = True

    def __init__(self, names=None, **inputs):
        super().__init__(**inputs)
        self.inputs.names = dict(names or {})
        add_traits(self.inputs, list(self.inputs.names))
        self.inputs.trait_set(**inputs)

    def _run_interface(self, runtime):
        missing = [key for key in self.inputs.names if not isdefined(getattr(self.inputs, key))]
        if missing:
            raise ValueError(f"no file given for the export(s) {', '.join(missing)}")
        pairs = named_files({key: getattr(self.inputs, key) for key in self.inputs.names},
                            self.inputs.names)
        exported = dict(pairs)
        files = {str(sidecar_path(source)): (source, name) for source, name in pairs
                 if not source.endswith(".json")}  # a sidecar -> its file
        pairs = [(_with_exported_sources(source, name, exported, files.get(source),
                                         runtime.cwd), name) for source, name in pairs]
        out_dir = Path(self.inputs.out_dir)
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


def _with_exported_sources(source, name, exported, own, folder):
    """A JSON sidecar naming its sources by their exported names (a copy written in the
    sink's folder), or ``source`` as it is; ``own``: (path, name) of its file."""
    if not source.endswith(".json"):
        return source
    fields = json.loads(Path(source).read_text())
    renamed = exported_sources(fields, exported, own)
    if renamed is fields:
        return source
    return write_json(Path(folder) / name, renamed)
