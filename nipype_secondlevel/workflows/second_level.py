"""The second-level analysis: design, mask, estimate, contrast, threshold, plot."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (
    Contrast,
    EstimateOLS,
    GlassBrain,
    GroupMask,
    PairedDesign,
    Threshold,
)

OUTPUT_FIELDS = [
    "design_matrix",
    "design_plot",
    "mask_file",
    "beta",
    "residual_variance",
    "dof",
    "contrast_name",
    "z_map",
    "t_map",
    "p_map",
    "effect_map",
    "variance_map",
    "thresholded_map",
    "cluster_table",
    "z_threshold",
    "glass_brain",
]


def init_paired_two_sample_wf(
    conditions=("vertical", "horizontal"),
    contrast=None,
    mask_strategy="nilearn",
    height_control="none",
    threshold=3.1,
    alpha=0.001,
    cluster_size=0,
    two_sided=True,
    mem_gb=1.0,
    name="paired_two_sample_wf",
):
    """Paired test of two conditions: OLS at every voxel and one t contrast.

    The design has a condition column coded 1/0 (its estimate is the mean
    paired difference) and one column per subject. The contrast is computed
    from the estimate, thresholded and drawn as a glass brain.

    Parameters
    ----------
    conditions : pair of str
        The conditions compared, first minus second.
    contrast : str or None
        Column name or expression; None tests the condition column.
    mask_strategy : {"nilearn", "mni152", "coverage"}
        How the group mask is made (see :class:`GroupMask`).
    height_control, threshold, alpha, cluster_size, two_sided
        Thresholding options (see :class:`Threshold`).
    mem_gb : float
        Memory hint of the estimation node, for MultiProc and SLURM.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    inputs_table
        TSV with subject, condition, path.

    Outputs (``outputnode``)
    ------------------------
    design_matrix, design_plot, mask_file, beta, residual_variance, dof,
    contrast_name, z_map, t_map, p_map, effect_map, variance_map,
    thresholded_map, cluster_table, z_threshold, glass_brain
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["inputs_table"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    design = pe.Node(PairedDesign(conditions=list(conditions)), name="design")
    mask = pe.Node(GroupMask(strategy=mask_strategy), name="mask")
    estimate = pe.Node(EstimateOLS(), name="estimate", mem_gb=mem_gb)
    contrast_node = pe.Node(Contrast(), name="contrast")
    if contrast is not None:
        contrast_node.inputs.contrast = contrast
    threshold_node = pe.Node(
        Threshold(
            height_control=height_control,
            threshold=threshold,
            alpha=alpha,
            cluster_size=cluster_size,
            two_sided=two_sided,
        ),
        name="threshold",
    )
    plot = pe.Node(GlassBrain(), name="plot")

    # fmt: off
    workflow.connect([
        (inputnode, design, [("inputs_table", "inputs_table")]),
        (design, mask, [("in_files", "in_files")]),
        (design, estimate, [("in_files", "in_files"),
                            ("design_matrix", "design_matrix")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (design, contrast_node, [("design_matrix", "design_matrix")]),
        (mask, contrast_node, [("mask_file", "mask_file")]),
        (estimate, contrast_node, [("beta", "beta"),
                                   ("residual_variance", "residual_variance"),
                                   ("dof", "dof")]),
        (contrast_node, threshold_node, [("z_map", "z_map"),
                                         ("contrast_name", "contrast_name")]),
        (mask, threshold_node, [("mask_file", "mask_file")]),
        (threshold_node, plot, [("thresholded_map", "stat_map"),
                                ("z_threshold", "threshold")]),
        (contrast_node, plot, [("contrast_name", "contrast_name")]),
        (design, outputnode, [("design_matrix", "design_matrix"),
                              ("design_plot", "design_plot")]),
        (mask, outputnode, [("mask_file", "mask_file")]),
        (estimate, outputnode, [("beta", "beta"),
                                ("residual_variance", "residual_variance"),
                                ("dof", "dof")]),
        (contrast_node, outputnode, [("contrast_name", "contrast_name"),
                                     ("z_map", "z_map"),
                                     ("t_map", "t_map"),
                                     ("p_map", "p_map"),
                                     ("effect_map", "effect_map"),
                                     ("variance_map", "variance_map")]),
        (threshold_node, outputnode, [("thresholded_map", "thresholded_map"),
                                      ("cluster_table", "cluster_table"),
                                      ("z_threshold", "z_threshold")]),
        (plot, outputnode, [("out_file", "glass_brain")]),
    ])
    # fmt: on
    return workflow
