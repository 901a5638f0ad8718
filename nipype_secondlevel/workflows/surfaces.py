"""The read and write ends of a surface or CIFTI analysis in the one group analysis.

:func:`~.group_analysis.init_group_analysis_wf` builds the same graph for every domain;
on a surface or CIFTI domain (``plan.domain``) the maps are read by ``read_maps``
(:class:`~..interfaces.surfaces.DomainMaps`) instead of being resampled, the mask is
``mask`` (:class:`~..interfaces.surfaces.DomainMask`), and the maps it exports are
written back on the domain here: GIFTI pairs or CIFTI files, clusters on the domain's
neighbour graph, pictures on the surfaces. The estimate, the contrasts, the
thresholds and the permutation tests are the volume's nodes.
"""

from nipype.pipeline import engine as pe

from ..interfaces.plotting import SurfacePicture
from ..interfaces.surfaces import (
    DomainClusters,
    DomainMaps,
    DomainMask,
    WriteDomainMaps,
)
from ..io.domains import domain_value
from ..io.meshes import HEMISPHERES
from ..spec import CLUSTER_CORRECTIONS


def plan_domain_value(plan):
    """The plan's domain as the nodes' ``domain`` input; None for volumes."""
    if plan.domain == "volume":
        return None
    return domain_value(plan.domain, plan.design.paths[0],
                        {h: plan.options.get(f"surface_{h}") for h in HEMISPHERES})


def permutation_domain_value(plan):
    """The domain of the permutation nodes: the plan's, with the extent of its clusters
    and TFCE (``extent``: "area", "vertices" or None, ``--surface-extent`` resolved)."""
    return {**plan_domain_value(plan), "extent": plan.options.get("surface_extent")}


def domain_read_nodes(workflow, domain, variances):
    """``read_maps`` and ``mask`` of a surface or CIFTI analysis, connected (the mask
    reads the variances, when the maps have some, to tell where a value is missing)."""
    read = pe.Node(DomainMaps(domain=domain), name="read_maps")
    mask = pe.Node(DomainMask(domain=domain), name="mask")
    workflow.connect(read, "out_files", mask, "in_files")
    if variances:
        workflow.connect(read, "variance_files", mask, "variance_files")
    return read, mask


def picture_node(domain):
    """The MapNode drawing each contrast: on the surfaces (the cortex of CIFTI)."""
    return pe.MapNode(SurfacePicture(domain=domain),
                      iterfield=["stat_map", "threshold", "contrast_name", "title"],
                      name="plot")


def connect_domain_ends(workflow, plan, domain, nodes, outputnode):
    """Write the exported maps of a surface or CIFTI analysis on its domain.

    ``nodes``: the analysis's ``mask``, ``estimate``, ``contrast``, ``threshold``,
    ``plot`` and (with a permutation correction) ``permutation`` (the sub-workflow).
    Fills the outputnode fields that are maps or their clusters.
    """
    two_sided = [c.two_sided for c in plan.contrasts]
    write_mask = pe.Node(WriteDomainMaps(domain=domain), name="write_mask")
    write_coverage = pe.Node(WriteDomainMaps(domain=domain), name="write_coverage")
    write_maps = pe.MapNode(WriteDomainMaps(domain=domain), iterfield=["in_files"],
                            name="write_contrast_maps")
    clusters = pe.MapNode(
        DomainClusters(domain=domain, cluster_size=plan.options["cluster_size"]),
        iterfield=["map_file", "two_sided"], name="clusters")
    clusters.inputs.two_sided = two_sided
    workflow.connect([
        (nodes["mask"], write_mask, [("mask_file", "in_files")]),
        (nodes["contrast"], write_maps, [("out_files", "in_files")]),
        (nodes["threshold"], clusters, [("thresholded_map", "map_file")]),
        (write_mask, outputnode, [("out_files", "mask_file")]),
        (nodes["estimate"], write_coverage, [("coverage_map", "in_files")]),
        (write_coverage, outputnode, [("out_files", "coverage_map")]),
        (nodes["mask"], outputnode, [("mask_file", "grid_mask")]),
        (write_maps, outputnode, [("out_files", "contrast_files")]),
        (clusters, outputnode, [("out_files", "thresholded_maps"),
                                ("cluster_table", "cluster_tables")]),
        (nodes["plot"], outputnode, [("out_file", "glass_brains")]),
    ])
    if plan.weighted:
        write_variance = pe.Node(WriteDomainMaps(domain=domain), name="write_variance")
        workflow.connect([
            (nodes["estimate"], write_variance, [("between_subject_variance", "in_files")]),
            (write_variance, outputnode, [("out_files", "between_subject_variance")]),
        ])
    if not plan.permutations:
        workflow.connect([
            (clusters, nodes["plot"], [("grid_file", "stat_map")]),
            (nodes["threshold"], nodes["plot"], [("z_threshold", "threshold"),
                                                 ("plot_title", "title")]),
            (clusters, outputnode, [("out_files", "significance_maps"),
                                    ("grid_file", "significance_grid_maps"),
                                    ("cluster_table", "significance_cluster_tables")]),
        ])
        return
    permutation = nodes["permutation"]
    write_logp = pe.MapNode(WriteDomainMaps(domain=domain), iterfield=["in_files"],
                            name="write_logp_maps")
    p_column = ("Cluster FWER p" if plan.options["correction"] in CLUSTER_CORRECTIONS
                else "Peak FWER p")
    corrected = pe.MapNode(DomainClusters(domain=domain, p_column=p_column),
                           iterfield=["map_file", "logp_file", "two_sided"],
                           name="corrected_clusters")
    corrected.inputs.two_sided = two_sided
    workflow.connect([
        (permutation, write_logp, [("outputnode.logp_maps", "in_files")]),
        (permutation, corrected, [("outputnode.significant_maps", "map_file"),
                                  ("outputnode.corrected_logp", "logp_file")]),
        (corrected, nodes["plot"], [("grid_file", "stat_map")]),
        (permutation, nodes["plot"], [("outputnode.z_thresholds", "threshold"),
                                      ("outputnode.plot_titles", "title")]),
        (write_logp, outputnode, [("out_files", "logp_maps")]),
        (permutation, outputnode, [("outputnode.corrected_logp", "corrected_logp"),
                                   ("outputnode.null_distributions", "null_distributions")]),
        (corrected, outputnode, [("out_files", "corrected_maps"),
                                 ("grid_file", "significance_grid_maps"),
                                 ("out_files", "significance_maps"),
                                 ("cluster_table", "corrected_cluster_tables"),
                                 ("cluster_table", "significance_cluster_tables")]),
    ])
