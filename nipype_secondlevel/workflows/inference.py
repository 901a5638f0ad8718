"""Permutation inference sub-workflow: plan, chunks (MapNode), merge."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.inference import MergePermutations, PermutationChunk, PlanPermutations

#: --correction values done by permutation (the others are parametric thresholds).
PERMUTATION_CORRECTIONS = ("maxT", "cluster-size", "cluster-mass", "tfce")

INPUT_FIELDS = ["data_file", "design_matrix", "mask_file", "z_map", "contrast_name"]
OUTPUT_FIELDS = ["logp_maps", "corrected_logp", "null_distributions", "significant_map",
                 "cluster_table", "z_threshold", "plot_title"]


def init_permutation_wf(correction="maxT", model="paired", n_perm=10000, n_chunks=1,
                        seed=0, alpha=0.05, tail="two-sided", cluster_forming_p=0.001,
                        tfce_E=0.5, tfce_H=2.0, contrast=None, uncorrected=True,
                        mem_gb=1.0, name="permutation_wf"):
    """Permutation test of one t contrast, spread over ``n_chunks`` jobs.

    ``plan`` fixes the patterns (every sign pattern when 2**n <= n_perm, else
    ``n_perm`` random ones from ``seed``) and splits their indices; ``chunks``
    is a MapNode over the index ranges (MultiProc and SLURM run the chunks in
    parallel); ``merge`` combines them. The p values do not depend on
    ``n_chunks``. Every run writes the voxel max-T and (if ``uncorrected``)
    uncorrected -log10 p maps; ``cluster-size``/``cluster-mass`` add cluster
    inference at ``cluster_forming_p``, ``tfce`` adds TFCE (E, H).

    Parameters
    ----------
    correction : {"maxT", "cluster-size", "cluster-mass", "tfce"}
        The map deciding significance (``significant_map``, the figure).
    model : {"paired", "one-sample", "glm"}
        See :mod:`nipype_secondlevel.interfaces.inference` (glm: Freedman-Lane
        with ``contrast`` weights).

    Inputs (``inputnode``): data_file, design_matrix, mask_file, z_map, contrast_name

    Outputs (``outputnode``): logp_maps, corrected_logp, null_distributions,
    significant_map, cluster_table, z_threshold, plot_title
    """
    if correction not in PERMUTATION_CORRECTIONS:
        raise ValueError(f"correction must be one of {PERMUTATION_CORRECTIONS}")
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    shared = {
        "model": model, "n_perm": n_perm, "seed": seed, "tail": tail,
        "cluster_inference": correction in ("cluster-size", "cluster-mass"),
        "cluster_forming_p": cluster_forming_p, "tfce": correction == "tfce",
        "tfce_E": tfce_E, "tfce_H": tfce_H, "uncorrected": uncorrected,
    }
    if contrast is not None:
        shared["contrast"] = [float(c) for c in contrast]
    plan = pe.Node(PlanPermutations(model=model, n_perm=n_perm, n_chunks=n_chunks, seed=seed),
                   name="plan")
    chunks = pe.MapNode(PermutationChunk(**shared), iterfield=["chunk"], name="chunks",
                        mem_gb=mem_gb)
    merge = pe.Node(MergePermutations(correction=correction, alpha=alpha, **shared),
                    name="merge", mem_gb=mem_gb)
    # fmt: off
    workflow.connect([
        (inputnode, plan, [("design_matrix", "design_matrix")]),
        (plan, chunks, [("chunks", "chunk")]),
        (inputnode, chunks, [("data_file", "data_file"), ("design_matrix", "design_matrix"),
                             ("mask_file", "mask_file")]),
        (chunks, merge, [("chunk_file", "chunk_files")]),
        (inputnode, merge, [("data_file", "data_file"), ("design_matrix", "design_matrix"),
                            ("mask_file", "mask_file"), ("z_map", "z_map"),
                            ("contrast_name", "contrast_name")]),
        (merge, outputnode, [(f, f) for f in OUTPUT_FIELDS]),
    ])
    # fmt: on
    return workflow
