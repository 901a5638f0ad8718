"""The one group analysis: design -> grid -> mask -> masked data -> estimate -> contrasts.

Every design (one-sample, paired, two-sample, covariates, a user's design file)
and every inference (height thresholds, FDR, Bonferroni, permutation tests)
goes through :func:`init_group_analysis_wf`; the demo and the Localizer are data
sources feeding it (see :mod:`nipype_secondlevel.workflows.pipelines`).
"""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (
    AnatomicalLabels,
    Contrast,
    DesignMatrix,
    EstimateMixedEffects,
    EstimateOLS,
    GlassBrain,
    GroupMask,
    MaskedData,
    MaskedDataFromRows,
    ResampleMaps,
    SelectMaps,
    Smooth,
    StackMaskedData,
    SummarizeMaps,
    Threshold,
    WritePlan,
)
from ..io.masked_data import MAPS_PER_READ_BLOCK, split_into_blocks
from ..io.masks import MAPS_PER_SUMMARY_BLOCK
from ..spec import DEFAULTS
from .inference import init_permutation_wf
from .surfaces import connect_domain_ends, domain_read_nodes, picture_node, plan_domain_value

INPUT_FIELDS = ["inputs_table"]
OUTPUT_FIELDS = [
    # the plan, the design, the data and the one estimate
    "plan_file", "design_matrix", "design_table", "design_plot", "blocks", "in_files",
    "variance_files", "resampled", "mask_file", "data_file", "beta", "residual_variance",
    "dof", "between_subject_variance", "coverage_map",
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
    # surface or CIFTI analyses: the mask and significance maps as grid images (the report)
    "grid_mask", "significance_grid_maps",
]


def masked_data_nodes(name):
    """The maps' masked values: a MapNode reading blocks of
    :data:`~nipype_secondlevel.io.masked_data.MAPS_PER_READ_BLOCK` consecutive maps
    (run in parallel by MultiProc and SLURM), and ``stack_<name>`` stacking the
    blocks into the one masked data file (byte for byte a single-process read)."""
    blocks = pe.MapNode(MaskedData(), iterfield=["in_files"], name=name,
                        mem_gb=0.5)
    return blocks, pe.Node(StackMaskedData(), name=f"stack_{name}", mem_gb=0.25)


def init_group_analysis_wf(plan, mem_gb=DEFAULTS["mem_gb"], name="group_analysis_wf"):
    """The group analysis a plan decided: any design, estimated once, any number of t
    and F contrasts, thresholds, corrections and permutation tests.

    Every node gets its piece of the plan (:mod:`nipype_secondlevel.design.plan`) as
    values, so a node reruns only when its own piece changes: a new threshold reruns
    the thresholds and what follows, a new contrast computes only that contrast. Nodes,
    in the order the data flows: ``plan`` (writes ``plan.json``) and ``design``
    (:class:`DesignMatrix`: the plan's design matrix, ``design.tsv`` and its picture);
    ``select_maps`` (:class:`SelectMaps`, only when the maps come at run time: the
    data source's maps in the plan's row order) -> ``resample`` (maps not on the
    reference grid are moved to it, with a warning: exactly when they have its voxels
    in another order, else interpolated within their non-zero voxels) ->
    ``summarize_maps`` (a MapNode, one pass over blocks of maps in parallel, which also
    keeps the maps' non-zero values) -> ``mask`` (voxels NaN or infinite in any map are
    left out, with a warning) -> ``stack_masked_data`` (the maps' masked values from
    that pass, one ``.npy`` read in voxel chunks; with ``--smoothing-fwhm``: ``smooth``
    -> ``masked_data``, a MapNode reading blocks of the smoothed maps in parallel ->
    ``stack_masked_data``; with mixed or fixed effects also ``masked_variances`` ->
    ``stack_masked_variances``, which refuses a variance of 0 or less in the mask) ->
    ``estimate`` (:class:`EstimateOLS`, or :class:`EstimateMixedEffects` with the
    first-level variances) -> ``contrast``, ``threshold``, ``labels`` (region names of
    the cluster tables, with atlases) and ``plot``, MapNodes over the contrasts. With a
    permutation correction the ``permutation_wf`` sub-workflow
    (:func:`~nipype_secondlevel.workflows.inference.init_permutation_wf`) tests every
    contrast and the figures show its significant maps; the parametric thresholded
    maps are still computed.

    On a surface or CIFTI domain (``plan.domain``, :mod:`.surfaces`) ``read_maps``
    replaces ``resample`` (the maps as grid images) and ``mask`` keeps the domain's
    support where every map has a value; the estimate, contrasts, thresholds and
    permutation tests are these nodes; the exported maps are written back as GIFTI pairs
    or CIFTI files, clusters formed on the domain's graph, pictures drawn on its surfaces.

    Parameters
    ----------
    plan : Plan
        The analysis (:func:`~nipype_secondlevel.design.plan.plan_analysis`).
    mem_gb : float
        Memory budget (GiB) of the estimation and the permutations (voxels processed
        at a time) and their nodes' hints; results do not depend on it.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    inputs_table
        With a plan made from row labels (its ``design.paths`` None): the data
        source's table (subject, condition and/or group, path, optional
        variance_path), read at run time. Unused when the plan lists the maps.

    Outputs (``outputnode``)
    ------------------------
    plan_file, design_matrix, design_table (design.tsv: rows labelled), design_plot,
    blocks, in_files, variance_files, resampled, mask_file, data_file, beta,
    residual_variance (ols), dof, between_subject_variance (mixed, fixed); one list
    item per contrast: contrast_names, stat_types, stat_maps, z_maps, contrast_files
    (every map of the contrast), thresholded_maps, cluster_tables, z_thresholds,
    glass_brains; with a permutation correction logp_maps, corrected_logp,
    null_distributions, corrected_maps, corrected_cluster_tables; and
    significance_maps, significance_cluster_tables: the maps deciding significance
    (corrected_maps with permutations, else thresholded_maps).
    """
    options, design = plan.options, plan.design
    weighted, variances = plan.weighted, plan.with_variances
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    outputnode.inputs.contrast_names = plan.labels
    outputnode.inputs.stat_types = [c.kind for c in plan.contrasts]
    outputnode.inputs.blocks = list(design.blocks)

    # Quick nodes: on a cluster they run in the submitting process (with MultiProc the
    # design's figure is drawn in a worker: DesignMatrix.draws).
    write_plan = pe.Node(WritePlan(plan=plan.to_json()), name="plan",
                         run_without_submitting=True)
    design_node = pe.Node(DesignMatrix(kind=design.kind, columns=design.columns,
                                       matrix=design.matrix, rows=design.rows),
                          name="design", run_without_submitting=True)
    domain = plan_domain_value(plan)  # None: volumes
    if domain is None:
        resample = pe.Node(ResampleMaps(), name="resample")
        if options.get("reference_map"):
            resample.inputs.reference = options["reference_map"]
    else:  # surface or CIFTI maps: read into grid images, masked on the domain
        resample, mask = domain_read_nodes(workflow, domain, variances)
    if design.paths is None:  # the maps of a data source, at run time
        select = pe.Node(SelectMaps(rows=design.rows, variances=weighted),
                         name="select_maps", run_without_submitting=True)
        workflow.connect([
            (inputnode, select, [("inputs_table", "inputs_table")]),
            (select, resample, [("in_files", "in_files"),
                                ("variance_files", "variance_files")]),
        ])
    else:
        resample.inputs.in_files = design.paths
        if variances:
            resample.inputs.variance_files = design.variance_paths
    # The mask's pass over the maps (and variances): blocks read in parallel by MultiProc,
    # merged. Left at nipype's default resource hints, it runs in the submitting process
    # on SLURM (a job per block would cost the demo more than it reads).
    zeros = bool(options.get("zeros_without_variance"))
    # Unsmoothed volumes: the mask's pass also keeps the maps' values, the masked data
    # are taken from them (each map read once).
    one_pass = domain is None and not options.get("smoothing_fwhm")
    if domain is None:
        summaries = pe.MapNode(
            SummarizeMaps(zeros_without_variance=zeros, map_rows=one_pass),
            iterfield=["in_files", "variance_files"] if variances else ["in_files"],
            name="summarize_maps")
        if options.get("mask"):
            mask = pe.Node(GroupMask(strategy="file", mask_file=options["mask"]),
                           name="mask")
        else:
            mask = pe.Node(GroupMask(strategy=options["mask_strategy"]), name="mask")
        workflow.connect([
            (resample, summaries, [(("out_files", split_into_blocks, MAPS_PER_SUMMARY_BLOCK),
                                    "in_files")]),
            (summaries, mask, [("summary_file", "summary_files")]),
            (resample, mask, [("out_files", "sources")]),
        ])
        if variances:
            workflow.connect(resample, ("variance_files", split_into_blocks,
                                        MAPS_PER_SUMMARY_BLOCK), summaries, "variance_files")
    else:
        mask.inputs.zeros_without_variance = zeros
    # The coverage rule, on every domain. Smoothing: the voxels every map covers.
    if options.get("smoothing_fwhm"):
        mask.inputs.trait_set(min_present=len(design.matrix), why=(
            "--smoothing-fwhm: smoothing would mix missing values with data; the voxels "
            "every map covers"))
    else:
        mask.inputs.min_present = plan.min_subjects
    # The maps the estimate reads: resampled, then smoothed if asked.
    prepared = resample
    if options.get("smoothing_fwhm"):
        prepared = pe.Node(Smooth(fwhm=float(options["smoothing_fwhm"])), name="smooth")
        workflow.connect(resample, "out_files", prepared, "in_files")
        if variances:
            workflow.connect(resample, "variance_files", prepared, "variance_files")
    # The maps' masked values written once (n_maps x n_voxels .npy), from the mask's pass
    # or read in blocks of maps; the estimate and the permutations read voxel chunks of it.
    if one_pass:
        data = pe.Node(MaskedDataFromRows(), name="stack_masked_data", mem_gb=0.25)
        workflow.connect([(summaries, data, [("rows_file", "rows_files")]),
                          (mask, data, [("mask_file", "mask_file")])])
    else:
        data_blocks, data = masked_data_nodes("masked_data")
        workflow.connect([
            (prepared, data_blocks, [(("out_files", split_into_blocks, MAPS_PER_READ_BLOCK),
                                       "in_files")]),
            (mask, data_blocks, [("mask_file", "mask_file")]),
            (data_blocks, data, [("data_file", "row_files")]),
        ])
    if weighted:
        fixed = {"first_level_dof": options["first_level_dof"]} if options.get(
            "first_level_dof") else {}
        estimate = pe.Node(EstimateMixedEffects(method=options["estimation"], mem_gb=mem_gb,
                                                **fixed),
                           name="estimate", mem_gb=mem_gb)
    else:
        estimate = pe.Node(EstimateOLS(mem_gb=mem_gb), name="estimate", mem_gb=mem_gb)
    # Missing values: every voxel with the subjects present there (interfaces.coverage).
    # A paired design's subject drops (both rows) where one of its maps is missing: its
    # column is then empty, and the voxel analysed where the condition column (the first)
    # is estimable; not the plan's contrasts, so that a new contrast reruns no estimate.
    paired = ({"whole_subjects": True,
               "contrasts": [[1.0] + [0.0] * (len(design.columns) - 1)]}
              if design.kind == "paired" else {})
    estimate.inputs.coverage = {
        "min_subjects": plan.min_subjects, "subjects": plan.subjects,
        "zeros_without_variance": zeros, "variance_files": design.variance_paths or [],
        "positive_variances": True, **paired}
    contrast = pe.MapNode(Contrast(), iterfield=["weights", "contrast_name"], name="contrast")
    contrast.inputs.weights = [c.weights for c in plan.contrasts]
    contrast.inputs.contrast_name = plan.labels
    # How the maps were prepared goes into every contrast map's sidecar (and so the
    # thresholded map's).
    preparation = {**({"SmoothingFWHM": float(options["smoothing_fwhm"])}
                      if options.get("smoothing_fwhm") else {}),
                   **({"MaskFile": options["mask"]} if options.get("mask") else {})}
    if preparation:
        contrast.inputs.preparation = preparation
    # |z| > threshold, or p < alpha (uncorrected, FDR, Bonferroni): the one that applies.
    level = "threshold" if plan.height_control == "none" else "alpha"
    # On a surface or CIFTI domain clusters are formed on its graph (connect_domain_ends).
    thresholds = {"height_control": plan.height_control, level: options[level],
                  "cluster_size": options["cluster_size"] if domain is None else 0}
    threshold_node = pe.MapNode(Threshold(**thresholds),
                                iterfield=["z_map", "contrast_name", "two_sided"],
                                name="threshold")
    threshold_node.inputs.contrast_name = plan.labels
    threshold_node.inputs.two_sided = [c.two_sided for c in plan.contrasts]
    plot = pe.MapNode(
        GlassBrain(), iterfield=["stat_map", "threshold", "contrast_name", "title"],
        name="plot",
    ) if domain is None else picture_node(domain)
    plot.inputs.contrast_name = plan.labels

    # fmt: off
    workflow.connect([
        (data, estimate, [("data_file", "data_file")]),
        (design_node, estimate, [("design_matrix", "design_matrix")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (design_node, contrast, [("design_matrix", "design_matrix")]),
        (mask, contrast, [("mask_file", "mask_file")]),
        (estimate, contrast, [("beta", "beta"), ("dof", "dof"),
                              ("coverage_fit", "coverage_fit")]),
        (contrast, threshold_node, [("z_map", "z_map")]),
        (mask, threshold_node, [("mask_file", "mask_file")]),
        (write_plan, outputnode, [("plan_file", "plan_file")]),
        (design_node, outputnode, [("design_matrix", "design_matrix"),
                                   ("design_table", "design_table"),
                                   ("design_plot", "design_plot")]),
        (resample, outputnode, [("out_files", "in_files"), ("resampled", "resampled"),
                                ("variance_files", "variance_files")]),
        (data, outputnode, [("data_file", "data_file")]),
        (estimate, outputnode, [("beta", "beta"), ("dof", "dof")]),
        (contrast, outputnode, [("stat_map", "stat_maps"),
                                ("z_map", "z_maps")]),
        (threshold_node, outputnode, [("z_threshold", "z_thresholds")]),
    ])
    # fmt: on
    if domain is None:
        workflow.connect([
            (mask, outputnode, [("mask_file", "mask_file")]),
            (estimate, outputnode, [("coverage_map", "coverage_map")]),
            (contrast, outputnode, [("out_files", "contrast_files")]),
            (threshold_node, outputnode, [("thresholded_map", "thresholded_maps")]),
            (plot, outputnode, [("out_file", "glass_brains")]),
        ])
        clusters = _labelled(workflow, threshold_node, "cluster_table", options["atlases"],
                             "labels")
        workflow.connect(*clusters, outputnode, "cluster_tables")
    # fmt: off
    if variances:
        # Read whenever the maps have them: they say where a value is missing. The
        # estimate refuses a variance of 0 or less beside a present effect (mixed, fixed).
        variance_blocks, variance_data = masked_data_nodes("masked_variances")
        workflow.connect([
            (prepared, variance_blocks, [(("variance_files", split_into_blocks,
                                           MAPS_PER_READ_BLOCK), "in_files")]),
            (mask, variance_blocks, [("mask_file", "mask_file")]),
            (variance_blocks, variance_data, [("data_file", "row_files")]),
            (variance_data, estimate, [("data_file", "variance_data_file")]),
        ])
    # fmt: on
    if weighted:
        # fmt: off
        workflow.connect([
            (estimate, contrast, [("cov_beta", "cov_beta")]),
            *([(estimate, contrast, [("kenward_roger", "kenward_roger")])]
              if options["estimation"] == "mixed" else []),
        ])
        if domain is None:
            workflow.connect(estimate, "between_subject_variance",
                             outputnode, "between_subject_variance")
    else:
        workflow.connect([
            (estimate, contrast, [("residual_variance", "residual_variance")]),
            (estimate, outputnode, [("residual_variance", "residual_variance")]),
        ])
    nodes = {"mask": mask, "estimate": estimate, "contrast": contrast,
             "threshold": threshold_node, "plot": plot}
    if not plan.permutations:
        if domain is not None:
            connect_domain_ends(workflow, plan, domain, nodes, outputnode)
            return workflow
        workflow.connect([
            (threshold_node, plot, [("thresholded_map", "stat_map"),
                                    ("z_threshold", "threshold"),
                                    ("plot_title", "title")]),
            (threshold_node, outputnode, [("thresholded_map", "significance_maps")]),
            (clusters[0], outputnode, [(clusters[1], "significance_cluster_tables")]),
        ])
        # fmt: on
        return workflow

    permutation = init_permutation_wf(plan, mem_gb=mem_gb)
    # fmt: off
    workflow.connect([
        (data, permutation, [("data_file", "inputnode.data_file")]),
        (estimate, permutation, [("coverage_data", "inputnode.coverage_data")]),
        (design_node, permutation, [("design_matrix", "inputnode.design_matrix")]),
        (mask, permutation, [("mask_file", "inputnode.mask_file")]),
        (contrast, permutation, [("z_map", "inputnode.z_maps")]),
    ])
    # fmt: on
    if domain is not None:
        connect_domain_ends(workflow, plan, domain, {**nodes, "permutation": permutation},
                            outputnode)
        return workflow
    # fmt: off
    workflow.connect([
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
    corrected = _labelled(workflow, permutation, "outputnode.cluster_tables",
                          options["atlases"], "corrected_labels")
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
