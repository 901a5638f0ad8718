"""The one group analysis: design -> grid -> mask -> masked data -> estimate -> contrasts.

Every design (one-sample, paired, two-sample, covariates, a user's design file)
and every inference (height thresholds, FDR, Bonferroni, permutation tests)
goes through :func:`init_group_analysis_wf`; the demo and the Localizer are data
sources feeding it (see :mod:`nipype_secondlevel.workflows.pipelines`).
"""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..design.matrices import DESIGNS
from ..interfaces import (
    AnatomicalLabels,
    Contrast,
    ContrastSpecs,
    EstimateMixedEffects,
    EstimateOLS,
    GlassBrain,
    GroupDesign,
    GroupMask,
    MaskedData,
    ResampleMaps,
    Smooth,
    StackMaskedData,
    SummarizeMaps,
    Threshold,
)
from ..io.errors import bad_input
from ..io.masked_data import MAPS_PER_READ_BLOCK, split_into_blocks
from ..io.masks import MAPS_PER_SUMMARY_BLOCK
from ..reporting.anatomy import DEFAULT_ATLASES
from .inference import PERMUTATION_CORRECTIONS, init_permutation_wf

ESTIMATIONS = ("ols", "mixed", "fixed")
#: ``correction`` values: a height threshold (none), a parametric correction of it
#: (fdr, bonferroni) or a permutation test (the others).
CORRECTIONS = ("none", "fdr", "bonferroni", *PERMUTATION_CORRECTIONS)
PERM_SCHEMES = ("auto", "sign-flip", "permute")

INPUT_FIELDS = ["inputs_table"]
OUTPUT_FIELDS = [
    # the design, the data and the one estimate
    "design_matrix", "design_table", "design_plot", "blocks", "in_files", "variance_files", "resampled",
    "mask_file", "data_file", "beta", "residual_variance", "dof", "between_subject_variance",
    # one list item per contrast, in contrast order
    "contrast_names", "stat_types", "stat_maps", "z_maps", "contrast_files",
    "thresholded_maps", "cluster_tables", "z_thresholds", "glass_brains",
    # permutation tests (with a permutation correction)
    "logp_maps", "corrected_logp", "null_distributions", "corrected_maps",
    "corrected_cluster_tables",
    # the map that decides significance and its clusters: corrected_maps and
    # corrected_cluster_tables with a permutation correction, else thresholded_maps
    # and cluster_tables
    "significance_maps", "significance_cluster_tables",
]


def resolved_alpha(alpha, correction):
    """The level used: ``alpha``, or by default 0.05 with a correction and 0.001 without."""
    if alpha is not None:
        return alpha
    return 0.05 if correction != "none" else 0.001


def permutation_model(design, covariates=()):
    """The model of :func:`init_permutation_wf` for a design type.

    paired: sign flips of each subject's difference; one-sample without
    covariates: sign flips of the maps; anything else: the general linear
    model (Freedman-Lane).
    """
    if design == "paired":
        return "paired"
    if design == "one-sample" and not covariates:
        return "one-sample"
    return "glm"


def _check_options(design, estimation, correction, height_control, perm_scheme,
                   exchangeability_blocks):
    """One-line errors for options that cannot go together; returns the height control."""
    if design not in DESIGNS:
        raise bad_input("design", f"must be one of {', '.join(DESIGNS)}, got {design!r}")
    if estimation not in ESTIMATIONS:
        raise bad_input("estimation", f"must be one of {', '.join(ESTIMATIONS)}, "
                        f"got {estimation!r}")
    if correction not in CORRECTIONS:
        raise bad_input("correction", f"must be one of {', '.join(CORRECTIONS)}, "
                        f"got {correction!r}")
    if perm_scheme not in PERM_SCHEMES:
        raise bad_input("perm_scheme", f"must be one of {', '.join(PERM_SCHEMES)}, "
                        f"got {perm_scheme!r}")
    permutations = correction in PERMUTATION_CORRECTIONS
    if permutations and estimation != "ols":
        raise bad_input(f"--correction {correction}", f"permutation tests need --estimation "
                        f"ols: with {estimation} effects every map has its own first-level "
                        "variance, so the maps are not exchangeable and permuting them "
                        "gives no valid p; use --correction none, fdr or bonferroni with "
                        f"--estimation {estimation}")
    if exchangeability_blocks and not permutations:
        raise bad_input(f"--exchangeability-blocks {exchangeability_blocks}",
                        "blocks are used by permutation tests only (--correction "
                        f"{', '.join(PERMUTATION_CORRECTIONS)})")
    if correction in ("fdr", "bonferroni"):
        if height_control not in ("none", correction):
            raise bad_input(f"--correction {correction}",
                            f"conflicts with --height-control {height_control}")
        return correction
    return height_control


def masked_data_nodes(name, positive=False):
    """The maps' masked values: a MapNode reading blocks of
    :data:`~nipype_secondlevel.io.masked_data.MAPS_PER_READ_BLOCK` consecutive maps
    (run in parallel by MultiProc and SLURM), and ``stack_<name>`` stacking the
    blocks into the one masked data file (byte for byte a single-process read)."""
    blocks = pe.MapNode(MaskedData(positive=positive), iterfield=["in_files"], name=name,
                        mem_gb=0.5)
    return blocks, pe.Node(StackMaskedData(), name=f"stack_{name}", mem_gb=0.25)


def init_group_analysis_wf(
    *,
    design: str = "one-sample",
    conditions=None,
    groups=None,
    covariates=(),
    center_covariates: bool = True,
    design_file=None,
    contrasts=None,
    estimation: str = "ols",
    first_level_dof: float = 100.0,
    reference_map=None,
    mask_strategy: str = "nilearn",
    mask_file=None,
    smoothing_fwhm: float | None = None,
    atlases=DEFAULT_ATLASES,
    height_control: str = "none",
    threshold: float = 3.1,
    alpha: float | None = None,
    cluster_size: int = 0,
    two_sided: bool = True,
    correction: str = "none",
    n_perm: int = 10000,
    n_chunks: int = 1,
    perm_seed: int = 0,
    cluster_forming_p: float = 0.001,
    perm_scheme: str = "auto",
    exchangeability_blocks=None,
    mem_gb: float = 1.0,
    name: str = "group_analysis_wf",
):
    """Any group design, estimated once, with any number of t and F contrasts.

    Nodes, in the order the data flows: ``design`` (:class:`GroupDesign`: the
    design matrix, the maps and the exchangeability blocks in design row order)
    -> ``contrast_specs`` (checks the contrasts against the design before
    anything is estimated) -> ``resample`` (maps not on the reference grid are
    moved to it, with a warning: exactly when they have its voxels in another
    order, else interpolated within their non-zero voxels) -> ``summarize_maps``
    (a MapNode, one pass over blocks of maps in parallel) -> ``mask`` (voxels
    NaN or infinite in any map are left out, with a warning) -> ``masked_data``
    (a MapNode reading blocks of maps in parallel) -> ``stack_masked_data``
    (the maps' masked values, one ``.npy`` read in voxel chunks; with mixed or
    fixed effects also ``masked_variances`` -> ``stack_masked_variances``, which
    refuses a variance of 0 or less in the mask) -> ``estimate`` (:class:`EstimateOLS`, or
    :class:`EstimateMixedEffects` with the first-level variances) ->
    ``contrast``, ``threshold`` and ``plot``, MapNodes over the contrasts: each
    contrast is computed from the one estimate and cached on its own, so adding
    a contrast computes only that one. With a permutation ``correction`` the
    ``permutation_wf`` sub-workflow
    (:func:`~nipype_secondlevel.workflows.inference.init_permutation_wf`) tests
    every contrast and the figures show its significant maps; the parametric
    thresholded maps are still computed.

    Parameters
    ----------
    design : {"one-sample", "paired", "two-sample", "file"}
    conditions, groups, covariates, center_covariates, design_file
        See :func:`nipype_secondlevel.design.matrices.group_design`.
    contrasts : list of str or None
        Contrast specifications (:func:`nipype_secondlevel.design.contrasts.parse_contrast`);
        None tests the design's default contrast (one-sample: the mean;
        two-sample: first group minus second; paired: the condition column;
        file: the first column).
    estimation : {"ols", "mixed", "fixed"}
        ols: ordinary least squares (nilearn's SecondLevelModel); mixed: REML
        between-subject variance with the first-level variances (FLAME1-like;
        t contrasts with Kenward-Roger covariance and per-voxel dof, F
        contrasts on n - rank X); fixed: fixed effects (nilearn's
        compute_fixed_effects). mixed and fixed need a ``variance_path`` column.
    first_level_dof : float
        fixed: dof of each first-level map (nilearn's default 100).
    reference_map : path or None
        Grid of the analysis (default: the first map).
    mask_strategy : {"nilearn", "mni152", "coverage"}
        How the group mask is made (see :class:`GroupMask`); ignored with ``mask_file``.
    mask_file : path or None
        A mask image (3D, resampled to the maps' grid, nearest neighbour): the
        analysis mask, less the voxels NaN or infinite in some map.
    smoothing_fwhm : float or None
        Gaussian smoothing of the maps (and variance maps) before the estimate,
        in mm FWHM, as nilearn's ``SecondLevelModel(smoothing_fwhm=...)``: node
        ``smooth`` (:class:`Smooth`) between ``resample`` and ``masked_data``;
        the mask is made from the unsmoothed maps, as nilearn does.
    atlases : list of str
        Atlases naming the regions of every peak and sub-peak of the cluster
        tables (node ``labels``, :class:`AnatomicalLabels`; choices
        :data:`~nipype_secondlevel.reporting.anatomy.ATLASES`); empty: no labels.
    height_control, threshold, alpha, cluster_size, two_sided
        Thresholds (see :class:`Threshold`); F contrasts are thresholded on the
        positive side only. ``alpha`` is also the level of ``correction``;
        None: 0.05 with a correction, else 0.001.
    correction : {"none", "fdr", "bonferroni", "maxT", "cluster-size", "cluster-mass", "tfce"}
        fdr, bonferroni: the height control of the thresholds; the others:
        permutation tests, ols only.
    n_perm, n_chunks, perm_seed, cluster_forming_p, perm_scheme
        Permutation tests: patterns (exhaustive when they number no more),
        jobs, seed, cluster-forming p, and the scheme ("auto": sign flips for
        one-sample and paired designs, permutations for the others, see
        :func:`~nipype_secondlevel.workflows.inference.init_permutation_wf`).
    exchangeability_blocks : str or None
        Inputs-table column of the exchangeability blocks (permutation tests).
    mem_gb : float
        Memory budget (GiB) of the estimation and the permutations (voxels
        processed at a time) and their nodes' hints; results do not depend on it.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    inputs_table
        TSV: subject, path, condition and/or group, optional variance_path,
        covariates and block columns.

    Outputs (``outputnode``)
    ------------------------
    design_matrix, design_table (design.tsv: rows labelled), design_plot, blocks,
    in_files, variance_files, resampled,
    mask_file, data_file, beta, residual_variance (ols), dof,
    between_subject_variance (mixed, fixed); one list item per contrast:
    contrast_names, stat_types, stat_maps, z_maps, contrast_files (every map of
    the contrast), thresholded_maps, cluster_tables, z_thresholds,
    glass_brains; with a permutation correction logp_maps, corrected_logp,
    null_distributions, corrected_maps, corrected_cluster_tables; and
    significance_maps, significance_cluster_tables: the maps deciding
    significance (corrected_maps with permutations, else thresholded_maps).
    """
    height_control = _check_options(design, estimation, correction, height_control,
                                    perm_scheme, exchangeability_blocks)
    alpha = resolved_alpha(alpha, correction)
    weighted = estimation != "ols"
    permutations = correction in PERMUTATION_CORRECTIONS
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    design_node = pe.Node(
        GroupDesign(design=design, center_covariates=center_covariates, variances=weighted),
        name="design",
    )
    for field, value in (("conditions", conditions), ("groups", groups),
                         ("covariates", covariates)):
        if value:
            setattr(design_node.inputs, field, [str(v) for v in value])
    if design_file:
        design_node.inputs.design_file = str(design_file)
    if exchangeability_blocks:
        design_node.inputs.exchangeability_blocks = str(exchangeability_blocks)
    specs = pe.Node(ContrastSpecs(two_sided=two_sided), name="contrast_specs")
    if contrasts:
        specs.inputs.contrasts = [str(c) for c in contrasts]
    resample = pe.Node(ResampleMaps(), name="resample")
    if reference_map:
        resample.inputs.reference = str(reference_map)
    # The mask's pass over the maps (and variances): blocks read in parallel by MultiProc,
    # merged. Left at nipype's default resource hints, it runs in the submitting process
    # on SLURM (a job per block would cost the demo more than it reads).
    summaries = pe.MapNode(
        SummarizeMaps(), iterfield=["in_files", "variance_files"] if weighted else ["in_files"],
        name="summarize_maps")
    if mask_file:
        mask = pe.Node(GroupMask(strategy="file", mask_file=str(mask_file)), name="mask")
    else:
        mask = pe.Node(GroupMask(strategy=mask_strategy), name="mask")
    # The maps the estimate reads: resampled, then smoothed if asked.
    prepared = resample
    if smoothing_fwhm:
        prepared = pe.Node(Smooth(fwhm=float(smoothing_fwhm)), name="smooth")
        workflow.connect(resample, "out_files", prepared, "in_files")
        if weighted:
            workflow.connect(resample, "variance_files", prepared, "variance_files")
    # The maps' masked values written once (n_maps x n_voxels .npy), read in blocks
    # of maps; the estimate and the permutations read voxel chunks of it.
    data_blocks, data = masked_data_nodes("masked_data")
    if weighted:
        estimate = pe.Node(
            EstimateMixedEffects(method=estimation, first_level_dof=first_level_dof,
                                 mem_gb=mem_gb),
            name="estimate", mem_gb=mem_gb,
        )
    else:
        estimate = pe.Node(EstimateOLS(mem_gb=mem_gb), name="estimate", mem_gb=mem_gb)
    contrast = pe.MapNode(Contrast(), iterfield=["contrast"], name="contrast")
    # How the maps were prepared goes into every contrast map's sidecar (and so the
    # thresholded map's).
    preparation = {**({"SmoothingFWHM": float(smoothing_fwhm)} if smoothing_fwhm else {}),
                   **({"MaskFile": str(mask_file)} if mask_file else {})}
    if preparation:
        contrast.inputs.preparation = preparation
    threshold_node = pe.MapNode(
        Threshold(height_control=height_control, threshold=threshold, alpha=alpha,
                  cluster_size=cluster_size),
        iterfield=["z_map", "contrast_name", "two_sided"],
        name="threshold",
    )
    plot = pe.MapNode(
        GlassBrain(), iterfield=["stat_map", "threshold", "contrast_name", "title"],
        name="plot",
    )

    # fmt: off
    workflow.connect([
        (inputnode, design_node, [("inputs_table", "inputs_table")]),
        (design_node, specs, [("design_matrix", "design_matrix"),
                              ("default_contrasts", "default_contrasts")]),
        # variance_files is undefined (and unused) without variances
        (design_node, resample, [("in_files", "in_files"),
                                 ("variance_files", "variance_files")]),
        (resample, summaries, [(("out_files", split_into_blocks, MAPS_PER_SUMMARY_BLOCK),
                                "in_files")]),
        (summaries, mask, [("summary_file", "summary_files")]),
        (prepared, data_blocks, [(("out_files", split_into_blocks, MAPS_PER_READ_BLOCK),
                                   "in_files")]),
        (mask, data_blocks, [("mask_file", "mask_file")]),
        (data_blocks, data, [("data_file", "row_files")]),
        (data, estimate, [("data_file", "data_file")]),
        (design_node, estimate, [("design_matrix", "design_matrix")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (specs, contrast, [("contrasts", "contrast")]),
        (design_node, contrast, [("design_matrix", "design_matrix")]),
        (mask, contrast, [("mask_file", "mask_file")]),
        (estimate, contrast, [("beta", "beta"), ("dof", "dof")]),
        (contrast, threshold_node, [("z_map", "z_map"), ("contrast_name", "contrast_name")]),
        (specs, threshold_node, [("two_sided", "two_sided")]),
        (mask, threshold_node, [("mask_file", "mask_file")]),
        (contrast, plot, [("contrast_name", "contrast_name")]),
        (design_node, outputnode, [("design_matrix", "design_matrix"),
                                   ("design_table", "design_table"),
                                   ("design_plot", "design_plot"), ("blocks", "blocks")]),
        (resample, outputnode, [("out_files", "in_files"), ("resampled", "resampled"),
                                ("variance_files", "variance_files")]),
        (mask, outputnode, [("mask_file", "mask_file")]),
        (data, outputnode, [("data_file", "data_file")]),
        (estimate, outputnode, [("beta", "beta"), ("dof", "dof")]),
        (contrast, outputnode, [("contrast_name", "contrast_names"),
                                ("stat_type", "stat_types"),
                                ("stat_map", "stat_maps"),
                                ("z_map", "z_maps"),
                                ("out_files", "contrast_files")]),
        (threshold_node, outputnode, [("thresholded_map", "thresholded_maps"),
                                      ("z_threshold", "z_thresholds")]),
        (plot, outputnode, [("out_file", "glass_brains")]),
    ])
    # fmt: on
    clusters = _labelled(workflow, threshold_node, "cluster_table", atlases, "labels")
    workflow.connect(*clusters, outputnode, "cluster_tables")
    # fmt: off
    if weighted:
        # Refuses a variance of 0 or less in the mask (an infinite weight), before
        # the estimate, for mixed and fixed effects alike.
        variance_blocks, variances = masked_data_nodes("masked_variances", positive=True)
        workflow.connect([
            (resample, summaries, [(("variance_files", split_into_blocks,
                                     MAPS_PER_SUMMARY_BLOCK), "variance_files")]),
            (prepared, variance_blocks, [(("variance_files", split_into_blocks,
                                           MAPS_PER_READ_BLOCK), "in_files")]),
            (mask, variance_blocks, [("mask_file", "mask_file")]),
            (variance_blocks, variances, [("data_file", "row_files")]),
            (variances, estimate, [("data_file", "variance_data_file")]),
            (estimate, contrast, [("cov_beta", "cov_beta")]),
            *([(estimate, contrast, [("kenward_roger", "kenward_roger")])]
              if estimation == "mixed" else []),
            (estimate, outputnode, [("between_subject_variance",
                                     "between_subject_variance")]),
        ])
    else:
        workflow.connect([
            (estimate, contrast, [("residual_variance", "residual_variance")]),
            (estimate, outputnode, [("residual_variance", "residual_variance")]),
        ])
    if not permutations:
        workflow.connect([
            (threshold_node, plot, [("thresholded_map", "stat_map"),
                                    ("z_threshold", "threshold"),
                                    ("plot_title", "title")]),
            (threshold_node, outputnode, [("thresholded_map", "significance_maps")]),
            (clusters[0], outputnode, [(clusters[1], "significance_cluster_tables")]),
        ])
        # fmt: on
        return workflow

    permutation = init_permutation_wf(
        correction=correction, model=permutation_model(design, covariates),
        scheme=perm_scheme, n_perm=n_perm, n_chunks=n_chunks, seed=perm_seed, alpha=alpha,
        two_sided=two_sided, cluster_forming_p=cluster_forming_p, mem_gb=mem_gb,
    )
    # fmt: off
    workflow.connect([
        (data, permutation, [("data_file", "inputnode.data_file")]),
        (design_node, permutation, [("design_matrix", "inputnode.design_matrix"),
                                    ("blocks", "inputnode.blocks")]),
        (mask, permutation, [("mask_file", "inputnode.mask_file")]),
        (specs, permutation, [("contrasts", "inputnode.contrasts"),
                              ("labels", "inputnode.contrast_names")]),
        (contrast, permutation, [("z_map", "inputnode.z_maps")]),
        (permutation, plot, [("outputnode.significant_maps", "stat_map"),
                             ("outputnode.z_thresholds", "threshold"),
                             ("outputnode.plot_titles", "title")]),
        (permutation, outputnode, [
            ("outputnode.logp_maps", "logp_maps"),
            ("outputnode.corrected_logp", "corrected_logp"),
            ("outputnode.null_distributions", "null_distributions"),
            ("outputnode.significant_maps", "corrected_maps"),
            ("outputnode.significant_maps", "significance_maps"),
        ]),
    ])
    # fmt: on
    corrected = _labelled(workflow, permutation, "outputnode.cluster_tables", atlases,
                          "corrected_labels")
    workflow.connect([(corrected[0], outputnode, [(corrected[1], "corrected_cluster_tables"),
                                                  (corrected[1], "significance_cluster_tables")])])
    return workflow


def _labelled(workflow, node, field, atlases, name):
    """(node, field) of the cluster tables ``node.field`` with region names added by a
    ``name`` MapNode (:class:`AnatomicalLabels`), or as they are without ``atlases``."""
    if not atlases:
        return node, field
    labels = pe.MapNode(AnatomicalLabels(atlases=[str(a) for a in atlases]),
                        iterfield=["cluster_table"], name=name)
    workflow.connect(node, field, labels, "cluster_table")
    return labels, "cluster_table"
