"""Permutation inference as interfaces: plan, chunk (a MapNode), merge.

``PlanPermutations`` decides the patterns (exhaustive or random) and splits
their indices into chunks; ``PermutationChunk`` computes one chunk's null
distributions (run as a MapNode over the chunks, so MultiProc or SLURM run
them in parallel); ``MergePermutations`` combines the chunks into -log10 p
maps. Pattern ``i`` is the same in whichever chunk computes it, so the p
values do not depend on the number of chunks (see
:mod:`nipype_secondlevel.stats.permutation`).

Models
------
paired
    The design of :class:`PairedDesign` (a 1/0 condition column, then one
    indicator column per subject). The rows are paired by subject and the
    test is a one-sample test of the differences, by sign flipping of each
    subject's difference (FSL randomise ``-1`` on the differences).
one-sample
    Every row is one subject; sign flipping.
glm
    Any design and t contrast: Freedman-Lane (Winkler et al. 2014) sign
    flipping of the residuals of the nuisance model (assumes independent,
    symmetric errors).
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
    isdefined,
    traits,
)

from ..io.errors import bad_input
from ..io.files import save_arrays, save_img, save_tsv
from ..io.images import load_mask, unmask
from ..io.tables import read_table
from ..stats import permutation as perm
from ..stats import spatial

MODELS = ("paired", "one-sample", "glm")
TAILS = spatial.TAILS

#: desc- entity of every -log10 p map, by PermutationResult field.
LOGP_DESCS = {
    "logp_max_t": "maxT",
    "logp_uncorrected": "uncorrected",
    "logp_max_size": "clusterSize",
    "logp_max_mass": "clusterMass",
    "logp_max_tfce": "TFCE",
}

#: The map each correction method reports.
CORRECTION_FIELDS = {
    "maxT": "logp_max_t",
    "cluster-size": "logp_max_size",
    "cluster-mass": "logp_max_mass",
    "tfce": "logp_max_tfce",
}


def permutation_problem(data_file, design_matrix, model, contrast=None):
    """(Y, X, contrast) of the test: rows to sign-flip, design, t contrast.

    paired: Y = first-condition rows minus second-condition rows of the same
    subject (subject = the indicator column set in the row), X = None.
    """
    design = read_table(design_matrix, "design matrix")
    Y = np.load(data_file, mmap_mode="r")
    if Y.shape[0] != len(design):
        raise bad_input(f"data file {data_file}",
                        f"{Y.shape[0]} rows but the design has {len(design)}")
    if model == "paired":
        condition = design.iloc[:, 0].to_numpy()
        subjects = design.iloc[:, 1:].to_numpy()
        if subjects.shape[1] == 0 or not np.all(subjects.sum(axis=1) == 1):
            raise bad_input(f"design matrix {design_matrix}",
                            "not a paired design (condition column, then one "
                            "indicator column per subject)")
        subject = subjects.argmax(axis=1)
        first, second = [], []
        for s in range(subjects.shape[1]):
            rows = np.flatnonzero(subject == s)
            ones = rows[condition[rows] == 1]
            zeros = rows[condition[rows] == 0]
            if ones.size != 1 or zeros.size != 1:
                raise bad_input(f"design matrix {design_matrix}",
                                f"subject column {design.columns[s + 1]} does not "
                                "have one row per condition")
            first.append(ones[0])
            second.append(zeros[0])
        diff = np.asarray(Y[first], dtype=float) - np.asarray(Y[second], dtype=float)
        return diff, None, None
    Y = np.asarray(Y, dtype=float)
    if model == "one-sample":
        return Y, None, None
    weights = np.asarray(contrast, dtype=float)
    if weights.size != design.shape[1]:
        raise bad_input("contrast", f"{weights.size} weights for {design.shape[1]} columns")
    return Y, design.to_numpy(dtype=float), weights


def _options(inputs, dof):
    threshold = None
    if inputs.cluster_inference:
        threshold = spatial.cluster_forming_threshold(
            inputs.cluster_forming_p, dof, inputs.tail)
    return perm.PermutationOptions(
        tail=inputs.tail, cluster_threshold=threshold, tfce=inputs.tfce,
        tfce_E=inputs.tfce_E, tfce_H=inputs.tfce_H, uncorrected=inputs.uncorrected,
    )


class _ProblemInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True,
                     desc="masked data (n_maps, n_voxels) .npy (MaskedData), design row order")
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    model = traits.Enum(*MODELS, usedefault=True, desc="see the module notes")
    contrast = traits.List(traits.Float, desc="t contrast weights (model glm)")
    n_perm = traits.Range(low=1, value=10000, usedefault=True,
                          desc="patterns, identity included (exhaustive if 2**n <= n_perm)")
    seed = traits.Int(0, usedefault=True, desc="seed of the random patterns")
    tail = traits.Enum(*TAILS, usedefault=True, desc="two-sided, positive or negative")
    cluster_inference = traits.Bool(False, usedefault=True,
                                    desc="cluster size and mass inference")
    cluster_forming_p = traits.Range(low=0.0, high=1.0, value=0.001, usedefault=True,
                                     desc="cluster-forming threshold, uncorrected p")
    tfce = traits.Bool(False, usedefault=True, desc="TFCE inference")
    tfce_E = traits.Float(0.5, usedefault=True, desc="TFCE extent exponent")
    tfce_H = traits.Float(2.0, usedefault=True, desc="TFCE height exponent")
    uncorrected = traits.Bool(True, usedefault=True, desc="uncorrected permutation p map")


def _load(inputs):
    Y, X, contrast = permutation_problem(
        inputs.data_file, inputs.design_matrix, inputs.model,
        inputs.contrast if isdefined(inputs.contrast) else None)
    mask, mask_img = load_mask(inputs.mask_file)
    if Y.shape[1] != int(mask.sum()):
        raise bad_input(f"data file {inputs.data_file}",
                        f"{Y.shape[1]} voxels but the mask has {int(mask.sum())}")
    model = perm.linear_model(X, contrast, n_subjects=Y.shape[0])
    return model, perm.prepare_data(model, Y), mask, mask_img


class _PlanInputSpec(BaseInterfaceInputSpec):
    design_matrix = File(exists=True, mandatory=True, desc="design matrix TSV")
    model = traits.Enum(*MODELS, usedefault=True, desc="see the module notes")
    n_perm = traits.Range(low=1, value=10000, usedefault=True, desc="patterns asked for")
    n_chunks = traits.Range(low=1, value=1, usedefault=True, desc="number of chunks")
    seed = traits.Int(0, usedefault=True, desc="seed of the random patterns")


class _PlanOutputSpec(TraitedSpec):
    chunks = traits.List(traits.List(traits.Int), desc="[start, stop] of every chunk")
    n_perm = traits.Int(desc="patterns used, identity included")
    exhaustive = traits.Bool(desc="every sign pattern enumerated")


class PlanPermutations(SimpleInterface):
    """How many patterns, exhaustive or random, and the chunks' index ranges."""

    input_spec = _PlanInputSpec
    output_spec = _PlanOutputSpec

    def _run_interface(self, runtime):
        design = read_table(self.inputs.design_matrix, "design matrix")
        n = len(design) // 2 if self.inputs.model == "paired" else len(design)
        plan = perm.plan_permutations(n, self.inputs.n_perm, seed=self.inputs.seed)
        self._results["chunks"] = [list(c) for c in
                                   perm.chunk_bounds(plan.n_perm, self.inputs.n_chunks)]
        self._results["n_perm"] = plan.n_perm
        self._results["exhaustive"] = plan.exhaustive
        return runtime


class _ChunkInputSpec(_ProblemInputSpec):
    chunk = traits.List(traits.Int, mandatory=True, minlen=2, maxlen=2,
                        desc="[start, stop) of the permutation indices")


class _ChunkOutputSpec(TraitedSpec):
    chunk_file = File(exists=True, desc=".npz: start, stop, maxima per pattern, "
                      "exceedance counts per voxel")


class PermutationChunk(SimpleInterface):
    """Null distributions of the maxima and exceedance counts for one chunk."""

    input_spec = _ChunkInputSpec
    output_spec = _ChunkOutputSpec

    def _run_interface(self, runtime):
        model, data, mask, _ = _load(self.inputs)
        options = _options(self.inputs, model.dof)
        plan = perm.plan_permutations(model.n_subjects, self.inputs.n_perm,
                                      seed=self.inputs.seed)
        start, stop = self.inputs.chunk
        if not 0 <= start < stop <= plan.n_perm:
            raise bad_input("chunk", f"[{start}, {stop}) outside [0, {plan.n_perm})")
        chunk = perm.null_chunk(model, data, plan, start, stop, mask, options)
        arrays = {k: v for k, v in vars(chunk).items() if v is not None}
        self._results["chunk_file"] = save_arrays(
            Path(runtime.cwd) / f"perm-{start:07d}-{stop:07d}_nulls.npz", **arrays
        )
        return runtime


def read_chunk(path):
    """A :class:`~nipype_secondlevel.stats.permutation.NullChunk` from its .npz."""
    with np.load(path) as saved:
        fields = {k: saved[k] for k in saved.files}
    fields["start"], fields["stop"] = int(fields["start"]), int(fields["stop"])
    fields.setdefault("exceedances", None)
    return perm.NullChunk(**fields)


class _MergeInputSpec(_ProblemInputSpec):
    chunk_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="PermutationChunk outputs, covering every index once")
    z_map = File(exists=True, mandatory=True, desc="z map of the contrast (for the figure)")
    correction = traits.Enum("maxT", "cluster-size", "cluster-mass", "tfce", usedefault=True,
                             desc="the map that sets significance")
    alpha = traits.Range(low=0.0, high=1.0, value=0.05, usedefault=True,
                         desc="family-wise error rate")
    contrast_name = traits.Str("contrast", usedefault=True, desc="label for file names")


class _MergeOutputSpec(TraitedSpec):
    logp_maps = traits.List(File(exists=True), desc="-log10 p maps (BIDS-style names)")
    corrected_logp = File(exists=True, desc="-log10 p map of the requested correction")
    null_distributions = File(exists=True, desc="TSV: one row per pattern, one column "
                              "per maximum (h0_max_t, ...), in pattern order")
    significant_map = File(exists=True, desc="z map, zero where corrected p >= alpha")
    cluster_table = File(exists=True, desc="clusters of the significant map (TSV, MNI mm)")
    z_threshold = traits.Float(desc="just below the smallest |z| kept (for plots)")
    plot_title = traits.Str(desc="title for the glass brain")


class MergePermutations(SimpleInterface):
    """Combine chunk null distributions into -log10 p maps and a significant map.

    Writes ``contrast-<label>_stat-t_desc-<maxT|uncorrected|clusterSize|
    clusterMass|TFCE>_logp.nii.gz``, the null distributions
    (``..._desc-nulls_permutations.tsv``) and the z map masked to the voxels
    where the requested correction gives p < alpha (``..._stat-z_desc-
    <method>corrected_statmap.nii.gz``) with its cluster table.
    """

    input_spec = _MergeInputSpec
    output_spec = _MergeOutputSpec

    def _run_interface(self, runtime):
        from nilearn.image import load_img as nl_load

        from .thresholding import cluster_table

        model, data, mask, mask_img = _load(self.inputs)
        options = _options(self.inputs, model.dof)
        field = CORRECTION_FIELDS[self.inputs.correction]
        if field in ("logp_max_size", "logp_max_mass") and not options.cluster_threshold:
            raise bad_input("correction", f"{self.inputs.correction} needs cluster_inference")
        if field == "logp_max_tfce" and not options.tfce:
            raise bad_input("correction", "tfce needs tfce=True")
        chunks = [read_chunk(f) for f in self.inputs.chunk_files]
        observed = perm.observed_maps(model, data, mask, options)
        try:
            result = perm.merge_null_chunks(observed, chunks, options)
        except ValueError as err:
            raise bad_input("chunk_files", str(err)) from err
        label = self.inputs.contrast_name
        out = Path(runtime.cwd)
        affine = mask_img.affine
        maps = {}
        for name, desc in LOGP_DESCS.items():
            values = getattr(result, name)
            if values is None:
                continue
            maps[name] = save_img(
                unmask(values, mask, affine),
                out / f"contrast-{label}_stat-t_desc-{desc}_logp.nii.gz")
        self._results["logp_maps"] = list(maps.values())
        self._results["corrected_logp"] = maps[field]
        nulls = {n: getattr(result, n) for n in
                 ("h0_max_t", "h0_max_size", "h0_max_mass", "h0_max_tfce")
                 if getattr(result, n) is not None}
        self._results["null_distributions"] = save_tsv(
            pd.DataFrame(nulls), out / f"contrast-{label}_desc-nulls_permutations.tsv")
        z = np.asarray(nl_load(self.inputs.z_map).get_fdata())[mask]
        significant = getattr(result, field) > -np.log10(self.inputs.alpha)
        if self.inputs.tail == "positive":
            significant &= z > 0
        elif self.inputs.tail == "negative":
            significant &= z < 0
        kept = np.where(significant, z, 0.0)
        desc = LOGP_DESCS[field]
        img = unmask(kept, mask, affine)
        self._results["significant_map"] = save_img(
            img, out / f"contrast-{label}_stat-z_desc-{desc}corrected_statmap.nii.gz")
        z_threshold = float(np.abs(z[significant]).min()) if significant.any() else np.inf
        # plots and tables show |z| >= the smallest significant one, just below it
        shown = max(np.nextafter(z_threshold, 0), 1e-6) if significant.any() else 1e6
        self._results["z_threshold"] = float(shown)
        self._results["plot_title"] = (
            f"{label}: {self.inputs.correction} FWE p < {self.inputs.alpha:g} "
            f"({result.n_perm} permutations, {int(significant.sum())} voxels)")
        table = cluster_table(img, shown, 0, self.inputs.tail == "two-sided")
        self._results["cluster_table"] = save_tsv(
            table, out / f"contrast-{label}_stat-z_desc-{desc}corrected_clusters.tsv")
        return runtime
