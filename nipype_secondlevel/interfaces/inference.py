"""Permutation inference as interfaces: plan, chunk (a MapNode), regroup, merge.

``PlanPermutations`` fixes, for every contrast, the patterns (exhaustive or
random) and gives one item per (contrast, chunk of pattern indices);
``PermutationChunk`` computes one item's null distributions (a MapNode over the
items, so MultiProc or SLURM run them in parallel and each is cached on its
own); ``GroupChunks`` gathers the chunk files of every contrast;
``MergePermutations`` (a MapNode over the contrasts) turns them into -log10 p
maps, the significant z map and its cluster table. Pattern ``i`` is the same
in whichever chunk computes it, so p values do not depend on the chunks (see
:mod:`nipype_secondlevel.stats.permutation`).

Models
------
paired
    A paired design (a 1/0 condition column, then one indicator column per
    subject): sign flips of every subject's difference of the two conditions.
one-sample, glm
    Any design and t or F contrast: Freedman-Lane (Winkler et al. 2014), by
    sign flips (symmetric errors) or permutations within exchangeability
    blocks (exchangeable errors); ``scheme="auto"`` chooses as
    :func:`~nipype_secondlevel.stats.permutation.choose_scheme`.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..design.permutation_tests import PermutationTest
from ..io.errors import bad_input
from ..io.files import save_arrays, save_img, save_tsv
from ..io.images import load_img, load_mask, unmask
from ..io.progress import Progress
from ..io.sidecars import (
    generated_by,
    permutation_fields,
    permutation_threshold_fields,
    permutation_title,
    preparation_fields,
    write_sidecar,
)
from ..reporting.clusters import cluster_table, values_at_peaks
from ..stats import permutation as perm
from ..stats.spatial import TFCE_E, TFCE_H

MODELS = ("paired", "one-sample", "glm")
SCHEMES = ("auto", *perm.SCHEMES)
CORRECTIONS = ("maxT", "cluster-size", "cluster-mass", "tfce")

#: desc- entity of every -log10 p map, by PermutationResult field ({stat}: T or F).
LOGP_DESCS = {
    "logp_max": "max{stat}",
    "logp_uncorrected": "uncorrected",
    "logp_cluster_size": "clusterSize",
    "logp_cluster_mass": "clusterMass",
    "logp_tfce": "TFCE",
}

#: The PermutationResult field of each correction.
CORRECTION_FIELDS = {
    "maxT": "logp_max",
    "cluster-size": "logp_cluster_size",
    "cluster-mass": "logp_cluster_mass",
    "tfce": "logp_tfce",
}

#: Null distributions written, by NullChunk / PermutationResult field.
NULL_COLUMNS = {
    "null_max": "max_{stat}",
    "null_cluster_size": "max_cluster_size",
    "null_cluster_mass": "max_cluster_mass",
    "null_tfce": "max_tfce",
}

class _TestInputSpec(BaseInterfaceInputSpec):
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    data_file = File(exists=True, mandatory=True,
                     desc="masked data (n_maps, n_voxels) .npy (MaskedData), design row order")
    blocks = traits.List(traits.Str, desc="exchangeability-block label of every design row "
                         "([]: none)")
    model = traits.Enum(*MODELS, usedefault=True, desc="see the module notes")
    scheme = traits.Enum(*SCHEMES, usedefault=True,
                         desc="sign flips, permutations, or auto (see choose_scheme)")
    n_perm = traits.Range(low=1, value=10000, usedefault=True,
                          desc="patterns asked for, identity included (exhaustive if "
                          "there are no more possible)")
    seed = traits.Int(0, usedefault=True, desc="seed of the random patterns")


class _PlanInputSpec(_TestInputSpec):
    contrasts = traits.List(traits.Str, mandatory=True, desc="contrast specifications")
    n_chunks = traits.Range(low=1, value=1, usedefault=True,
                            desc="chunks of pattern indices per contrast")


class _PlanOutputSpec(TraitedSpec):
    items = traits.List(traits.Dict, desc="one per (contrast, chunk): contrast, scheme, "
                        "n_perm, start, stop")


class PlanPermutations(SimpleInterface):
    """The patterns of every contrast and one item per (contrast, chunk)."""

    input_spec = _PlanInputSpec
    output_spec = _PlanOutputSpec

    def _run_interface(self, runtime):
        items = []
        for spec in self.inputs.contrasts:
            test = PermutationTest(self.inputs, spec)
            for start, stop in perm.chunk_bounds(test.plan.n_perm, self.inputs.n_chunks):
                items.append({"contrast": spec, "scheme": test.scheme,
                              "n_perm": test.plan.n_perm, "start": start, "stop": stop})
        self._results["items"] = items
        return runtime


class _OptionsInputSpec(_TestInputSpec):
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    correction = traits.Enum(*CORRECTIONS, usedefault=True,
                             desc="the map that sets significance")
    two_sided = traits.Bool(True, usedefault=True, desc="two-sided t tests (F: positive)")
    cluster_forming_p = traits.Range(low=0.0, high=1.0, value=0.001, usedefault=True,
                                     desc="cluster-forming threshold, uncorrected p")
    mem_gb = traits.Float(1.0, usedefault=True, desc="memory budget (GiB) of the data held")


def _mask(inputs, test):
    mask, mask_img = load_mask(inputs.mask_file)
    if test.columns.n_voxels != int(mask.sum()):
        raise bad_input(f"data file {inputs.data_file}", f"{test.columns.n_voxels} voxels "
                        f"but the mask has {int(mask.sum())}")
    return mask, mask_img


class _ChunkInputSpec(_OptionsInputSpec):
    item = traits.Dict(mandatory=True, desc="an item of PlanPermutations")


class _ChunkOutputSpec(TraitedSpec):
    chunk_file = File(exists=True, desc=".npz: contrast, start, stop, maxima per pattern, "
                      "exceedance counts per voxel")


class PermutationChunk(SimpleInterface):
    """Null distributions of the maxima and exceedance counts of one item."""

    input_spec = _ChunkInputSpec
    output_spec = _ChunkOutputSpec

    def _run_interface(self, runtime):
        item = self.inputs.item
        test = PermutationTest(self.inputs, item["contrast"], item["scheme"], item["n_perm"])
        mask, _ = _mask(self.inputs, test)
        start, stop = int(item["start"]), int(item["stop"])
        if test.plan.n_perm != item["n_perm"] or not 0 <= start < stop <= test.plan.n_perm:
            raise bad_input("item", f"[{start}, {stop}) is not a chunk of the "
                            f"{test.plan.n_perm} patterns of {test.label}")
        options, _ = test.options(self.inputs)
        chunk = perm.null_chunk(test.model, test.columns, test.plan, start, stop, mask,
                                options, self.inputs.mem_gb,
                                Progress(f"permutations {start:,}-{stop - 1:,} of {test.label}"))
        arrays = {k: v for k, v in vars(chunk).items() if v is not None}
        self._results["chunk_file"] = save_arrays(
            Path(runtime.cwd) / f"contrast-{test.label}_perm-{start:07d}-{stop:07d}_nulls.npz",
            contrast=np.array(item["contrast"]), **arrays)
        return runtime


def read_chunk(path):
    """(contrast specification, :class:`~nipype_secondlevel.stats.permutation.NullChunk`)."""
    with np.load(path) as saved:
        fields = {k: saved[k] for k in saved.files}
    spec = str(fields.pop("contrast"))
    fields["start"], fields["stop"] = int(fields["start"]), int(fields["stop"])
    fields.setdefault("exceedances", None)
    return spec, perm.NullChunk(**fields)


class _GroupInputSpec(BaseInterfaceInputSpec):
    contrasts = traits.List(traits.Str, mandatory=True, desc="contrast specifications")
    chunk_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="PermutationChunk outputs of every contrast")


class _GroupOutputSpec(TraitedSpec):
    chunk_files = traits.List(traits.List(File(exists=True)),
                              desc="the chunk files of every contrast, in contrast order")


class GroupChunks(SimpleInterface):
    """Gather the chunk files of every contrast (for the merge MapNode)."""

    input_spec = _GroupInputSpec
    output_spec = _GroupOutputSpec

    def _run_interface(self, runtime):
        owners = [read_chunk(f)[0] for f in self.inputs.chunk_files]
        groups = []
        for spec in self.inputs.contrasts:
            mine = [f for f, owner in zip(self.inputs.chunk_files, owners) if owner == spec]
            if not mine:
                raise bad_input("chunk_files", f"no chunk of contrast {spec!r}")
            groups.append(mine)
        self._results["chunk_files"] = groups
        return runtime


class _MergeInputSpec(_OptionsInputSpec):
    contrast = traits.Str(mandatory=True, desc="contrast specification")
    contrast_name = traits.Str(mandatory=True, desc="label for file names")
    chunk_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="the contrast's chunk files, covering every index once")
    z_map = File(exists=True, mandatory=True, desc="z map of the contrast (significant map)")
    alpha = traits.Range(low=0.0, high=1.0, value=0.05, usedefault=True,
                         desc="family-wise error rate")


class _MergeOutputSpec(TraitedSpec):
    logp_maps = traits.List(File(exists=True), desc="-log10 p maps (BIDS-style names)")
    corrected_logp = File(exists=True, desc="-log10 p map of the requested correction")
    null_distributions = File(exists=True, desc="TSV: one row per pattern, one column per "
                              "maximum, in pattern order")
    significant_map = File(exists=True, desc="z map, zero where corrected p >= alpha")
    cluster_table = File(exists=True, desc="clusters of the significant map with their "
                         "FWER p (TSV, MNI mm)")
    z_threshold = traits.Float(desc="just below the smallest |z| kept (for plots)")
    plot_title = traits.Str(desc="title naming the correction")


class MergePermutations(SimpleInterface):
    """Combine a contrast's chunks into -log10 p maps and its significant map.

    Writes ``contrast-<label>_stat-<t|F>_desc-<maxT|maxF|uncorrected|clusterSize|
    clusterMass|TFCE>_logp.nii.gz``, the null distributions
    (``contrast-<label>_desc-nulls_permutations.tsv``), the z map where the
    correction gives p < alpha (``contrast-<label>_stat-z_desc-<method>corrected_
    statmap.nii.gz``) and its cluster table (``..._clusters.tsv``), each with
    a JSON sidecar.
    """

    input_spec = _MergeInputSpec
    output_spec = _MergeOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        test = PermutationTest(inputs, inputs.contrast)
        mask, mask_img = _mask(inputs, test)
        options, forming = test.options(inputs)
        chunks = [read_chunk(f)[1] for f in inputs.chunk_files]
        observed = perm.observed_maps(test.model, test.columns, test.plan, mask, options,
                                      inputs.mem_gb)
        try:
            result = perm.merge_null_chunks(observed, chunks, options)
        except ValueError as err:
            raise bad_input("chunk_files", str(err)) from err
        if result.n_perm != test.plan.n_perm:
            raise bad_input("chunk_files", f"{result.n_perm} patterns, the plan has "
                            f"{test.plan.n_perm}")
        label, stat, out = inputs.contrast_name, test.kind, Path(runtime.cwd)
        stat_name = "T" if stat == "t" else "F"
        field = CORRECTION_FIELDS[inputs.correction]
        sources = [inputs.data_file, inputs.design_matrix, inputs.mask_file]

        def correction(method):
            return permutation_fields(
                method, stat, test.plan.n_perm, test.plan.exhaustive, test.plan.seed,
                test.scheme, test.n_blocks, options.tail,
                forming if method in ("cluster-size", "cluster-mass") else None,
                (TFCE_E, TFCE_H) if method == "tfce" else None)

        def sidecar(path, description, method, extra=None):
            write_sidecar(path, {
                "Contrast": label,
                "ContrastWeights": test.weights[0] if stat == "t" else test.weights,
                "Statistic": stat,
                "DegreesOfFreedom": test.model.degrees_of_freedom,
                "Description": description,
                "Correction": correction(method),
                **preparation_fields(inputs.z_map),
                **(extra or {}),
                "Sources": [Path(f).name for f in sources],
                "SourceFiles": [str(Path(f).absolute()) for f in sources],
                "GeneratedBy": generated_by("permutation merge"),
            })
            return path

        maps = {}
        methods = {"logp_max": "maxT", "logp_uncorrected": "uncorrected",
                   **{v: k for k, v in CORRECTION_FIELDS.items() if k != "maxT"}}
        for name, desc in LOGP_DESCS.items():
            values = getattr(result, name)
            if values is None:
                continue
            desc = desc.format(stat=stat_name)
            maps[name] = sidecar(save_img(
                unmask(values, mask, mask_img.affine),
                out / f"contrast-{label}_stat-{stat}_desc-{desc}_logp.nii.gz"),
                f"-log10 p, {desc} permutation p values", methods[name])
        self._results["logp_maps"] = list(maps.values())
        self._results["corrected_logp"] = maps[field]
        nulls = {column.format(stat=stat): getattr(result, name)
                 for name, column in NULL_COLUMNS.items() if getattr(result, name) is not None}
        self._results["null_distributions"] = sidecar(save_tsv(
            pd.DataFrame(nulls), out / f"contrast-{label}_desc-nulls_permutations.tsv"),
            "null distributions of the maxima, one row per pattern (pattern 0: identity)",
            inputs.correction)

        z = np.asarray(load_img(inputs.z_map, "z map").get_fdata())[mask]
        significant = getattr(result, field) > -np.log10(inputs.alpha)
        if options.tail == "positive":
            significant &= z > 0
        kept = np.where(significant, z, 0.0)
        z_threshold = float(np.abs(z[significant]).min()) if significant.any() else np.inf
        # plots and tables show |z| >= the smallest significant one, just below it
        shown = max(np.nextafter(z_threshold, 0), 1e-6) if significant.any() else 1e6
        self._results["z_threshold"] = float(shown)
        fields = correction(inputs.correction)
        threshold = {"Threshold": permutation_threshold_fields(
            inputs.correction, inputs.alpha, z_threshold, fields)}
        self._results["plot_title"] = permutation_title(label, inputs.correction,
                                                        inputs.alpha, fields)
        desc = LOGP_DESCS[field].format(stat=stat_name)
        img = unmask(kept, mask, mask_img.affine)
        self._results["significant_map"] = sidecar(save_img(
            img, out / f"contrast-{label}_stat-z_desc-{desc}corrected_statmap.nii.gz"),
            f"z map where the {desc} permutation p < {inputs.alpha:g}, else 0",
            inputs.correction, {**threshold, "Statistic": "z"})
        table = cluster_table(img, shown, 0, options.tail == "two-sided")
        p_column = ("Cluster FWER p" if inputs.correction in ("cluster-size", "cluster-mass")
                    else "Peak FWER p")
        logp_img = unmask(getattr(result, field), mask, mask_img.affine)
        table[p_column] = 10.0 ** -values_at_peaks(table, logp_img)
        self._results["cluster_table"] = sidecar(save_tsv(
            table, out / f"contrast-{label}_stat-z_desc-{desc}corrected_clusters.tsv"),
            f"clusters of the {desc}-corrected z map and the FWER p at each peak",
            inputs.correction, threshold)
        return runtime
