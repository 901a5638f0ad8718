"""Any group design: inputs table -> design -> grid -> mask -> one estimate -> contrasts."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..design.matrices import DESIGNS
from ..interfaces import (
    Contrast,
    ContrastSpecs,
    DerivativesSink,
    EstimateMixedEffects,
    EstimateOLS,
    FetchLocalizer,
    GlassBrain,
    GroupDesign,
    GroupMask,
    MaskedData,
    ResampleMaps,
    Threshold,
    VarianceFromTMaps,
)
from .reporting import add_report, all_parameters, call_text

ESTIMATIONS = ("ols", "mixed", "fixed")

OUTPUT_FIELDS = [
    "design_matrix",
    "design_plot",
    "in_files",
    "variance_files",
    "resampled",
    "mask_file",
    "beta",
    "dof",
    "between_subject_variance",
    "contrast_names",
    "stat_types",
    "stat_maps",
    "z_maps",
    "contrast_files",
    "thresholded_maps",
    "cluster_tables",
    "z_thresholds",
    "glass_brains",
]

#: outputnode fields exported by :func:`init_group_pipeline_wf` (lists are flattened).
EXPORTED = [
    "design_matrix",
    "design_plot",
    "mask_file",
    "contrast_files",
    "thresholded_maps",
    "cluster_tables",
    "glass_brains",
]


#: Report inputs -> outputnode fields of :func:`init_group_analysis_wf`.
GROUP_REPORT_FIELDS = {
    "design_matrix": "design_matrix",
    "design_plot": "design_plot",
    "mask_file": "mask_file",
    "stat_maps": "z_maps",
    "thresholded_maps": "thresholded_maps",
    "cluster_tables": "cluster_tables",
    "glass_brains": "glass_brains",
}


def init_group_analysis_wf(
    design="one-sample",
    conditions=None,
    groups=None,
    covariates=(),
    center_covariates=True,
    design_file=None,
    contrasts=None,
    estimation="ols",
    first_level_dof=100.0,
    reference_map=None,
    mask_strategy="nilearn",
    height_control="none",
    threshold=3.1,
    alpha=0.001,
    cluster_size=0,
    two_sided=True,
    mem_gb=1.0,
    name="group_analysis_wf",
):
    """Any group design, estimated once, with any number of t and F contrasts.

    Nodes: ``design`` (:class:`GroupDesign`) -> ``contrast_specs`` (checks the
    contrasts against the design before anything is estimated) ->
    ``resample`` (maps not on the reference grid are resampled, with a
    warning) -> ``mask`` -> ``estimate`` (OLS on the masked data, or
    :class:`EstimateMixedEffects` with the first-level variances) ->
    ``contrast``, ``threshold`` and ``plot``, MapNodes over the contrasts:
    each contrast is computed from the one estimate and cached on its own, so
    adding a contrast computes only that one.

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
        ols: ordinary least squares; mixed: REML between-subject variance with
        the first-level variances (FLAME1-like; t contrasts with Kenward-Roger
        covariance and dof, F contrasts on n - rank X); fixed: fixed
        effects (nilearn's compute_fixed_effects). mixed and fixed need a
        ``variance_path`` column.
    first_level_dof : float
        fixed: dof of each first-level map (nilearn's default 100).
    reference_map : path or None
        Grid of the analysis (default: the first map).
    mask_strategy, height_control, threshold, alpha, cluster_size, two_sided
        As :func:`init_paired_two_sample_wf`. F contrasts are thresholded on
        the positive side only.
    mem_gb : float
        Memory budget of the estimation (voxels fitted at a time) and its hint.

    Inputs (``inputnode``)
    ----------------------
    inputs_table

    Outputs (``outputnode``)
    ------------------------
    design_matrix, design_plot, in_files, variance_files, resampled, mask_file,
    beta, dof, between_subject_variance (mixed/fixed); one list item per
    contrast: contrast_names, stat_types, stat_maps, z_maps, contrast_files
    (every map of the contrast), thresholded_maps, cluster_tables,
    z_thresholds, glass_brains
    """
    from ..io.errors import bad_input

    if design not in DESIGNS:
        raise bad_input("design", f"must be one of {', '.join(DESIGNS)}, got {design!r}")
    if estimation not in ESTIMATIONS:
        raise bad_input("estimation", f"must be one of {', '.join(ESTIMATIONS)}, "
                        f"got {estimation!r}")
    weighted = estimation != "ols"
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["inputs_table"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    design_node = pe.Node(
        GroupDesign(design=design, center_covariates=center_covariates, variances=weighted),
        name="design",
    )
    for field, value in (("conditions", conditions), ("groups", groups),
                         ("covariates", covariates), ("design_file", design_file)):
        if value:
            setattr(design_node.inputs, field,
                    str(value) if field == "design_file" else [str(v) for v in value])
    specs = pe.Node(ContrastSpecs(two_sided=two_sided), name="contrast_specs")
    if contrasts:
        specs.inputs.contrasts = [str(c) for c in contrasts]
    resample = pe.Node(ResampleMaps(), name="resample")
    if reference_map:
        resample.inputs.reference = str(reference_map)
    mask = pe.Node(GroupMask(strategy=mask_strategy), name="mask")
    contrast = pe.MapNode(Contrast(), iterfield=["contrast"], name="contrast")
    threshold_node = pe.MapNode(
        Threshold(height_control=height_control, threshold=threshold, alpha=alpha,
                  cluster_size=cluster_size),
        iterfield=["z_map", "contrast_name", "two_sided"],
        name="threshold",
    )
    plot = pe.MapNode(
        GlassBrain(), iterfield=["stat_map", "threshold", "contrast_name"], name="plot"
    )

    # fmt: off
    workflow.connect([
        (inputnode, design_node, [("inputs_table", "inputs_table")]),
        (design_node, specs, [("design_matrix", "design_matrix"),
                              ("default_contrasts", "default_contrasts")]),
        (design_node, resample, [("in_files", "in_files")]),
        (resample, mask, [("out_files", "in_files")]),
        (specs, contrast, [("contrasts", "contrast")]),
        (design_node, contrast, [("design_matrix", "design_matrix")]),
        (mask, contrast, [("mask_file", "mask_file")]),
        (contrast, threshold_node, [("z_map", "z_map"), ("contrast_name", "contrast_name")]),
        (specs, threshold_node, [("two_sided", "two_sided")]),
        (mask, threshold_node, [("mask_file", "mask_file")]),
        (threshold_node, plot, [("thresholded_map", "stat_map"),
                                ("z_threshold", "threshold")]),
        (contrast, plot, [("contrast_name", "contrast_name")]),
        (design_node, outputnode, [("design_matrix", "design_matrix"),
                                   ("design_plot", "design_plot")]),
        (resample, outputnode, [("out_files", "in_files"), ("resampled", "resampled")]),
        (mask, outputnode, [("mask_file", "mask_file")]),
        (contrast, outputnode, [("contrast_name", "contrast_names"),
                                ("stat_type", "stat_types"),
                                ("stat_map", "stat_maps"),
                                ("z_map", "z_maps"),
                                ("out_files", "contrast_files")]),
        (threshold_node, outputnode, [("thresholded_map", "thresholded_maps"),
                                      ("cluster_table", "cluster_tables"),
                                      ("z_threshold", "z_thresholds")]),
        (plot, outputnode, [("out_file", "glass_brains")]),
    ])
    if weighted:
        estimate = pe.Node(
            EstimateMixedEffects(method=estimation, first_level_dof=first_level_dof),
            name="estimate", mem_gb=mem_gb,
        )
        workflow.connect([
            (design_node, resample, [("variance_files", "variance_files")]),
            (resample, estimate, [("out_files", "in_files"),
                                  ("variance_files", "variance_files")]),
            (resample, outputnode, [("variance_files", "variance_files")]),
            (estimate, contrast, [("cov_beta", "cov_beta")]),
            *([(estimate, contrast, [("kenward_roger", "kenward_roger")])]
              if estimation == "mixed" else []),
            (estimate, outputnode, [("between_subject_variance",
                                     "between_subject_variance")]),
        ])
    else:
        # The maps' masked values written once, read in voxel chunks by the estimate.
        data = pe.Node(MaskedData(), name="masked_data", mem_gb=0.5)
        estimate = pe.Node(EstimateOLS(mem_gb=mem_gb), name="estimate", mem_gb=mem_gb)
        workflow.connect([
            (resample, data, [("out_files", "in_files")]),
            (mask, data, [("mask_file", "mask_file")]),
            (data, estimate, [("data_file", "data_file")]),
            (estimate, contrast, [("residual_variance", "residual_variance")]),
        ])
    workflow.connect([
        (design_node, estimate, [("design_matrix", "design_matrix")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (estimate, contrast, [("beta", "beta"), ("dof", "dof")]),
        (estimate, outputnode, [("beta", "beta"), ("dof", "dof")]),
    ])
    # fmt: on
    return workflow


def init_group_pipeline_wf(out_dir, inputs_table=None, source=None, name="group_wf",
                           command=None, **analysis):
    """The group analysis of an inputs table, exported to ``out_dir``.

    Parameters
    ----------
    out_dir : str
        Output folder of the sink.
    inputs_table : path or None
        The user's inputs table (when there is no ``source``).
    source : nipype Node or None
        Node with an ``inputs_table`` output (e.g. a fetch), instead.
    command : str or None
        The command line, shown in the HTML report.
    analysis
        Keyword options of :func:`init_group_analysis_wf`.
    """
    workflow = pe.Workflow(name=name)
    analysis_wf = init_group_analysis_wf(**analysis)
    exports = list(EXPORTED)
    if analysis.get("estimation", "ols") != "ols":
        exports.append("between_subject_variance")
    merge = pe.Node(niu.Merge(len(exports) + 1, ravel_inputs=True), name="collect_outputs",
                    run_without_submitting=True)
    sink = pe.Node(DerivativesSink(out_dir=str(out_dir)), name="sink",
                   run_without_submitting=True)
    if source is not None:
        workflow.connect(source, "inputs_table", analysis_wf, "inputnode.inputs_table")
    else:
        analysis_wf.inputs.inputnode.inputs_table = str(inputs_table)
    for i, field in enumerate(exports, start=1):
        workflow.connect(analysis_wf, f"outputnode.{field}", merge, f"in{i}")
    workflow.connect(merge, "out", sink, "in_files")
    add_report(
        workflow, source, analysis_wf, merge, f"in{len(exports) + 1}",
        all_parameters(init_group_analysis_wf, analysis), command=command,
        python_call=call_text("init_group_pipeline_wf", str(out_dir), inputs_table=inputs_table,
                              name=name, **analysis),
        after=[sink.name], fields=GROUP_REPORT_FIELDS, inputs_table=inputs_table,
    )
    return workflow


def init_localizer_variance_wf(out_dir, n_subjects=16, data_dir=None, estimation="mixed",
                               name="localizer_wf", **analysis):
    """The reference Localizer analysis (paired, vertical vs horizontal) with
    variance-weighted estimation.

    The t maps are fetched with the contrast maps; each map's first-level
    variance is (contrast / t)^2 (:class:`VarianceFromTMaps`).
    """
    fetch = pe.Node(FetchLocalizer(n_subjects=n_subjects, get_tmaps=True), name="fetch")
    if data_dir is not None:
        fetch.inputs.data_dir = str(data_dir)
    variances = pe.Node(VarianceFromTMaps(), name="variances")
    analysis.setdefault("conditions", ["vertical", "horizontal"])
    analysis.setdefault("design", "paired")
    workflow = init_group_pipeline_wf(
        out_dir, source=variances, estimation=estimation, name=name, **analysis
    )
    workflow.connect(fetch, "inputs_table", variances, "inputs_table")
    return workflow
