"""Permutation inference as interfaces: chunks (a MapNode) and merges (a MapNode).

The plan (:mod:`nipype_secondlevel.design.plan`) fixed, for every contrast, the model,
the scheme, the patterns (exhaustive or random) and the chunks of pattern indices;
``PermutationChunk`` computes one (contrast, chunk) item's null distributions (a
MapNode over the items, so MultiProc or a cluster run them in parallel and each is
cached on its own); ``MergePermutations`` (a MapNode over the contrasts) turns a
contrast's chunks into -log10 p maps, the significant z map and its cluster table.
Pattern ``i`` is the same in whichever chunk computes it, so p values do not depend on
the chunks (see :mod:`nipype_secondlevel.stats.permutation`).

Models
------
paired
    A paired design (a 1/0 condition column, then one indicator column per
    subject): sign flips of every subject's difference of the two conditions.
one-sample, glm
    Any design and t or F contrast: Freedman-Lane (Winkler et al. 2014), by
    sign flips (symmetric errors) or permutations within exchangeability
    blocks (exchangeable errors).
"""

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..design.permutation_tests import PermutationTest
from ..io.domains import domain_graph_edges, extent_weights, load_domain
from ..io.errors import bad_input
from ..io.files import save_arrays, save_img, save_tsv
from ..io.images import load_img, load_mask, stat_intent, unmask
from ..io.naming import CORRECTION_FIELDS, LOGP_DESCS, plain_name
from ..io.progress import Progress
from ..io.sidecars import (
    acceleration_fields,
    generated_by,
    permutation_fields,
    permutation_threshold_fields,
    permutation_title,
    preparation_fields,
    source_fields,
    write_sidecar,
)
from ..io.tables import read_design
from ..reporting.clusters import cluster_table, values_at_peaks
from ..spec import (
    ACCELERATIONS,
    CLUSTER_CORRECTIONS,
    DEFAULTS,
    EXTENT_CORRECTIONS,
    PERMUTATION_CORRECTIONS,
)
from ..stats import permutation as perm
from ..stats.spatial import TFCE_SURFACE_E, TFCE_SURFACE_H, graph_from_edges

#: Null distributions written, by NullChunk / PermutationResult field.
NULL_COLUMNS = {
    "null_max": "max_{stat}",
    "null_cluster_size": "max_cluster_size",
    "null_cluster_mass": "max_cluster_mass",
    "null_tfce": "max_tfce",
}


class _OptionsInputSpec(BaseInterfaceInputSpec):
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    data_file = File(exists=True, mandatory=True,
                     desc="masked data (n_maps, n_voxels) .npy (MaskedData), design row order")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    correction = traits.Enum(*PERMUTATION_CORRECTIONS, mandatory=True,
                             desc="the map that sets significance")
    mem_gb = traits.Float(DEFAULTS["mem_gb"], usedefault=True, nohash=True,
                          desc="memory budget (GiB) of the data held; results do not depend "
                          "on it")
    domain = traits.Dict(desc="surface or CIFTI data (io.domains.domain_value) and the "
                         "extent of its clusters (extent: area, vertices): clusters and TFCE "
                         "on its neighbour graph, TFCE with the surface exponents")
    coverage_data = File(
        exists=True, desc="with missing values: the masked data with NaN where a value is "
        "missing (the estimate's); every voxel is tested with its present subjects, its "
        "statistic on the z scale of its own dof")
    min_subjects = traits.Range(low=1, usedefault=True,
                                desc="with coverage_data: fewest maps a voxel is tested with")


def _coverage_test(inputs, test, options, forming):
    """(X, contrast, data with NaN, options on the z scale) of a test with missing values,
    or None. Paired: the differences of the pairs (NaN where a map of the pair is missing),
    sign-flipped as a one-sample test."""
    if not isdefined(inputs.coverage_data):
        return None
    if forming is not None:  # cluster-forming p on the z maps
        from ..stats.permutation import coverage as perm_coverage

        options = replace(options, cluster_threshold=perm_coverage.cluster_threshold(
            forming[0], options.tail))
    data = np.load(inputs.coverage_data)
    if test.test.model == "paired":
        first, second = (np.asarray(rows, dtype=int) for rows in test.test.pairs)
        return np.ones((first.size, 1)), np.ones((1, 1)), data[first] - data[second], options
    return read_design(inputs.design_matrix)[1], test.rows, data, options


def _mask(inputs, test):
    mask, mask_img = load_mask(inputs.mask_file)
    if test.columns.n_voxels != int(mask.sum()):
        raise bad_input(f"data file {inputs.data_file}", f"{test.columns.n_voxels} voxels "
                        f"but the mask has {int(mask.sum())}")
    return mask, mask_img


def _on_domain(inputs, mask, options):
    """``(mask, options)``; on a surface or CIFTI domain ``(its neighbour graph among the
    mask's elements, weighted by their areas with extent "area", options with TFCE's
    surface exponents)``."""
    if not isdefined(inputs.domain):
        return mask, options
    edges = domain_graph_edges(load_domain(inputs.domain), mask)
    return (graph_from_edges(edges, int(mask.sum()), extent_weights(inputs.domain, mask)),
            replace(options, tfce_E=TFCE_SURFACE_E, tfce_H=TFCE_SURFACE_H))


class _ChunkInputSpec(_OptionsInputSpec):
    item = traits.Dict(mandatory=True, desc="contrast (a plan's Contrast as a dict, with "
                       "its permutations), start and stop: the patterns [start, stop)")


class _ChunkOutputSpec(TraitedSpec):
    chunk_file = File(exists=True, desc=".npz: contrast, start, stop, maxima per pattern, "
                      "exceedance counts per voxel (and, in the chunk starting at 0, the "
                      "observed t or F per voxel, which the merge reads)")


class PermutationChunk(SimpleInterface):
    """Null distributions of the maxima and exceedance counts of one item."""

    input_spec = _ChunkInputSpec
    output_spec = _ChunkOutputSpec

    def _run_interface(self, runtime):
        item = self.inputs.item
        inputs = self.inputs
        test = PermutationTest(inputs.design_matrix, inputs.data_file, item["contrast"])
        mask, _ = _mask(inputs, test)
        start, stop = int(item["start"]), int(item["stop"])
        if not 0 <= start < stop <= test.plan.n_perm:
            raise bad_input("item", f"[{start}, {stop}) is not a chunk of the "
                            f"{test.plan.n_perm} patterns of {test.label}")
        options, forming = test.options(inputs.correction)
        where, options = _on_domain(inputs, mask, options)
        coverage = _coverage_test(inputs, test, options, forming)
        if coverage is not None:
            X, contrast, Y, options = coverage
            from ..stats.permutation import coverage as perm_coverage

            chunk = perm_coverage.coverage_null_chunk(X, contrast, Y, test.plan, start, stop,
                                                      where, options, inputs.min_subjects)
        else:
            chunk = perm.null_chunk(
                test.model, test.columns, test.plan, start, stop, where, options,
                inputs.mem_gb, Progress(f"permutations {start:,}-{stop - 1:,} of {test.label}"))
        arrays = {k: v for k, v in vars(chunk).items() if v is not None}
        self._results["chunk_file"] = save_arrays(
            Path(runtime.cwd) / f"nulls_{start:07d}-{stop:07d}.npz", **arrays)
        return runtime


def warn_fallbacks(label, fits):
    """One warning line naming the maps of contrast ``label`` whose acceleration fell back
    to the permutation p values (no fit passed)."""
    names = {v: k for k, v in CORRECTION_FIELDS.items()}
    fell_back = [names[name] for name, fit in fits.items() if fit["FellBack"]]
    if fell_back:
        method = next(iter(fits.values()))["Method"]
        warnings.warn(f"contrast {label}: --accel {method} found no good fit to the null "
                      f"maxima of {', '.join(fell_back)}: their permutation p values are kept",
                      stacklevel=2)


def read_chunk(path):
    """The :class:`~nipype_secondlevel.stats.permutation.NullChunk` of a chunk file."""
    with np.load(path) as saved:
        fields = {k: saved[k] for k in saved.files}
    fields["start"], fields["stop"] = int(fields["start"]), int(fields["stop"])
    fields.setdefault("exceedances", None)
    return perm.NullChunk(**fields)


class _MergeInputSpec(_OptionsInputSpec):
    contrast = traits.Dict(mandatory=True, desc="a plan's Contrast as a dict, with its "
                           "permutations")
    chunk_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="the contrast's chunk files, covering every index once")
    z_map = File(exists=True, mandatory=True, desc="z map of the contrast (significant map)")
    alpha = traits.Range(low=0.0, high=1.0, exclude_low=True, mandatory=True,
                         desc="family-wise error rate")
    accel = traits.Enum(*ACCELERATIONS, usedefault=True, desc="FWER p values from the "
                        "permutations (none) or a fit to their maxima (tail, gamma)")


class _MergeOutputSpec(TraitedSpec):
    logp_maps = traits.List(File(exists=True), desc="-log10 p maps, as <PermutationResult "
                            "field>.nii.gz (logp_max.nii.gz...)")
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

    Writes the -log10 p maps (max-T or max-F, uncorrected, and the correction's),
    the null distributions (``nulls.tsv``), the z map where the correction gives
    p < alpha (``corrected.nii.gz``) and its cluster table (``corrected_clusters.tsv``),
    each with a JSON sidecar; the sink names them (:mod:`..io.naming`).
    """

    input_spec = _MergeInputSpec
    output_spec = _MergeOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        test = PermutationTest(inputs.design_matrix, inputs.data_file, inputs.contrast)
        mask, mask_img = _mask(inputs, test)
        options, forming = test.options(inputs.correction)
        where, options = _on_domain(inputs, mask, options)
        extent = inputs.domain.get("extent") if isdefined(inputs.domain) else None
        chunks = [read_chunk(f) for f in inputs.chunk_files]
        coverage = _coverage_test(inputs, test, options, forming)
        if coverage is not None:
            X, contrast, Y, options = coverage
            from ..stats.permutation import coverage as perm_coverage

            observed = perm_coverage.coverage_observed_maps(X, contrast, Y, test.plan, where,
                                                            options, inputs.min_subjects)
        else:  # (the first chunk computed the statistic from the data it read)
            statistic = next((c.statistic for c in chunks if c.statistic is not None), None)
            if statistic is not None and statistic.shape != (test.columns.n_voxels,):
                raise bad_input("chunk_files", f"the statistic of {statistic.size} voxels, "
                                f"the data have {test.columns.n_voxels}")
            observed = perm.observed_maps(test.model, test.columns, test.plan, where,
                                          options, inputs.mem_gb, statistic)
        try:
            result = perm.merge_null_chunks(observed, chunks, options, inputs.accel)
        except ValueError as err:
            raise bad_input("chunk_files", str(err)) from err
        if result.n_perm != test.plan.n_perm:
            raise bad_input("chunk_files", f"{result.n_perm} patterns, the plan has "
                            f"{test.plan.n_perm}")
        label, stat, out = test.label, test.kind, Path(runtime.cwd)
        stat_name = "T" if stat == "t" else "F"
        field = CORRECTION_FIELDS[inputs.correction]
        sources = [inputs.data_file, inputs.design_matrix, inputs.mask_file]

        def correction(method):
            return permutation_fields(
                method, stat, test.plan.n_perm, test.plan.exhaustive, test.plan.seed,
                test.scheme, test.n_blocks, options.tail,
                forming if method in CLUSTER_CORRECTIONS else None,
                (options.tfce_E, options.tfce_H) if method == "tfce" else None,
                extent if method in EXTENT_CORRECTIONS else None)

        def sidecar(path, description, method, extra=None, field=None):
            write_sidecar(path, {
                "Contrast": label,
                "ContrastWeights": test.weights[0] if stat == "t" else test.weights,
                "Statistic": stat,
                "DegreesOfFreedom": test.model.degrees_of_freedom,
                "Description": description,
                "Correction": {**correction(method), **acceleration_fields(
                    inputs.accel, result.fits.get(field or CORRECTION_FIELDS.get(method)))},
                **preparation_fields(inputs.z_map),
                **(extra or {}),
                **source_fields(sources),
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
            maps[name] = sidecar(save_img(unmask(values, mask, mask_img),
                                          out / plain_name(name)),
                                 f"-log10 p, {desc} permutation p values", methods[name],
                                 field=name)
        self._results["logp_maps"] = list(maps.values())
        warn_fallbacks(label, result.fits)
        self._results["corrected_logp"] = maps[field]
        nulls = {column.format(stat=stat): getattr(result, name)
                 for name, column in NULL_COLUMNS.items() if getattr(result, name) is not None}
        self._results["null_distributions"] = sidecar(save_tsv(
            pd.DataFrame(nulls), out / "nulls.tsv"),
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
        img = stat_intent(unmask(kept, mask, mask_img), "z")
        self._results["significant_map"] = sidecar(save_img(img, out / "corrected.nii.gz"),
            f"z map where the {desc} permutation p < {inputs.alpha:g}, else 0",
            inputs.correction, {**threshold, "Statistic": "z"})
        table = cluster_table(img, shown, 0, options.tail == "two-sided")
        p_column = ("Cluster FWER p" if inputs.correction in CLUSTER_CORRECTIONS
                    else "Peak FWER p")
        logp_img = unmask(getattr(result, field), mask, mask_img)
        table[p_column] = 10.0 ** -values_at_peaks(table, logp_img)
        self._results["cluster_table"] = sidecar(save_tsv(table, out / "corrected_clusters.tsv"),
            f"clusters of the {desc}-corrected z map and the FWER p at each peak",
            inputs.correction, threshold)
        return runtime
