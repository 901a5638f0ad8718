"""The second-level analysis: design, mask, estimate, contrast, threshold, plot."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (
    Contrast,
    EstimateOLS,
    GlassBrain,
    GroupMask,
    MaskedData,
    PairedDesign,
    Threshold,
)

OUTPUT_FIELDS = [
    "design_matrix",
    "design_plot",
    "mask_file",
    "data_file",
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
    "permutation_maps",
    "null_distributions",
    "corrected_map",
    "corrected_cluster_table",
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
    correction="none",
    n_perm=10000,
    n_chunks=1,
    perm_seed=0,
    cluster_forming_p=0.001,
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
        Memory budget (GiB) of the estimation: it sets how many voxels are fitted
        at a time (the results do not depend on it) and is the node's memory hint
        for MultiProc and SLURM.
    correction : {"none", "maxT", "cluster-size", "cluster-mass", "tfce"}
        Permutation inference (sign flips of the paired differences, see
        :func:`~nipype_secondlevel.workflows.inference.init_permutation_wf`) at
        family-wise ``alpha``; the glass brain then shows the z map where the
        corrected p < alpha. "none": the thresholds above only (FDR and
        Bonferroni are ``height_control`` values).
    n_perm, n_chunks, perm_seed, cluster_forming_p
        Permutations (all 2**n sign patterns when 2**n <= n_perm), chunks run
        as separate jobs, seed, cluster-forming p (cluster corrections).
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    inputs_table
        TSV with subject, condition, path.

    Outputs (``outputnode``)
    ------------------------
    design_matrix, design_plot, mask_file, data_file, beta, residual_variance, dof,
    contrast_name, z_map, t_map, p_map, effect_map, variance_map,
    thresholded_map, cluster_table, z_threshold, glass_brain
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["inputs_table"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    design = pe.Node(PairedDesign(conditions=list(conditions)), name="design")
    mask = pe.Node(GroupMask(strategy=mask_strategy), name="mask")
    # The input maps' masked values, written once (n_maps x n_voxels .npy); every
    # node needing the data reads voxel chunks of this one file.
    data = pe.Node(MaskedData(), name="masked_data", mem_gb=0.5)
    estimate = pe.Node(EstimateOLS(mem_gb=mem_gb), name="estimate", mem_gb=mem_gb)
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
    ])
    if correction != "none":
        from .inference import init_permutation_wf

        permutation = init_permutation_wf(
            correction=correction, model="paired", n_perm=n_perm, n_chunks=n_chunks,
            seed=perm_seed, alpha=alpha, two_sided=two_sided,
            cluster_forming_p=cluster_forming_p, mem_gb=mem_gb,
        )
        permutation.inputs.inputnode.contrasts = [contrast or f"{conditions[0]}_vs_{conditions[1]}"]
        permutation.inputs.inputnode.blocks = []
        workflow.connect([
            (data, permutation, [("data_file", "inputnode.data_file")]),
            (design, permutation, [("design_matrix", "inputnode.design_matrix")]),
            (mask, permutation, [("mask_file", "inputnode.mask_file")]),
            (contrast_node, permutation, [(("z_map", _as_list), "inputnode.z_maps"),
                                          (("contrast_name", _as_list),
                                           "inputnode.contrast_names")]),
            (permutation, plot, [(("outputnode.significant_maps", _first), "stat_map"),
                                 (("outputnode.z_thresholds", _first), "threshold"),
                                 (("outputnode.plot_titles", _first), "title")]),
            (permutation, outputnode, [
                (("outputnode.logp_maps", _first), "permutation_maps"),
                (("outputnode.null_distributions", _first), "null_distributions"),
                (("outputnode.significant_maps", _first), "corrected_map"),
                (("outputnode.cluster_tables", _first), "corrected_cluster_table")]),
        ])
    else:
        workflow.connect([
            (threshold_node, plot, [("thresholded_map", "stat_map"),
                                    ("z_threshold", "threshold")]),
        ])
    workflow.connect([
        (design, mask, [("in_files", "in_files")]),
        (design, data, [("in_files", "in_files")]),
        (mask, data, [("mask_file", "mask_file")]),
        (data, estimate, [("data_file", "data_file")]),
        (design, estimate, [("design_matrix", "design_matrix")]),
        (mask, estimate, [("mask_file", "mask_file")]),
        (design, contrast_node, [("design_matrix", "design_matrix")]),
        (mask, contrast_node, [("mask_file", "mask_file")]),
        (estimate, contrast_node, [("beta", "beta"),
                                   ("residual_variance", "residual_variance"),
                                   ("dof", "dof")]),
        (contrast_node, threshold_node, [("z_map", "z_map"),
                                         ("contrast_name", "contrast_name")]),
        (mask, threshold_node, [("mask_file", "mask_file")]),
        (contrast_node, plot, [("contrast_name", "contrast_name")]),
        (design, outputnode, [("design_matrix", "design_matrix"),
                              ("design_plot", "design_plot")]),
        (mask, outputnode, [("mask_file", "mask_file")]),
        (data, outputnode, [("data_file", "data_file")]),
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


def _as_list(item):
    return [item]


def _first(items):
    return items[0]
