"""Permutation inference sub-workflow: plan, chunks (MapNode), regroup, merge (MapNode)."""

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.inference import (
    CORRECTIONS,
    GroupChunks,
    MergePermutations,
    PermutationChunk,
    PlanPermutations,
)

#: --correction values done by permutation (the others are parametric thresholds).
PERMUTATION_CORRECTIONS = CORRECTIONS

INPUT_FIELDS = ["data_file", "design_matrix", "mask_file", "contrasts", "contrast_names",
                "z_maps", "blocks"]
#: outputnode field <- merge output (one item per contrast).
OUTPUT_FIELDS = {
    "logp_maps": "logp_maps",
    "corrected_logp": "corrected_logp",
    "null_distributions": "null_distributions",
    "significant_maps": "significant_map",
    "cluster_tables": "cluster_table",
    "z_thresholds": "z_threshold",
    "plot_titles": "plot_title",
}


def init_permutation_wf(*, correction="maxT", model="glm", scheme="auto", n_perm=10000,
                        n_chunks=1, seed=0, alpha=0.05, two_sided=True,
                        cluster_forming_p=0.001, mem_gb=1.0, name="permutation_wf"):
    """Permutation tests of several t or F contrasts, each spread over ``n_chunks`` jobs.

    ``plan`` fixes every contrast's patterns (all of them when there are at
    most ``n_perm``, else ``n_perm`` random ones from ``seed``) and gives one
    item per (contrast, chunk); ``chunks`` is a MapNode over the items (MultiProc
    and SLURM run them in parallel; each item is cached on its own, so adding a
    contrast at the end of the list computes only its items); ``group`` gathers
    the chunk files per contrast; ``merge`` is a MapNode over the contrasts. The
    p values do not depend on ``n_chunks`` nor on ``mem_gb``. Every contrast
    gets voxel-wise max-T (max-F) and uncorrected -log10 p maps;
    ``cluster-size``/``cluster-mass`` add cluster inference at
    ``cluster_forming_p``, ``tfce`` adds TFCE (E = 0.5, H = 2).

    Parameters
    ----------
    correction : {"maxT", "cluster-size", "cluster-mass", "tfce"}
        The map deciding significance (``significant_maps``, the figures).
    model : {"paired", "one-sample", "glm"}
        paired: sign flips of each subject's paired difference (the design of
        ``paired_design``); one-sample, glm: Freedman-Lane on the design.
    scheme : {"auto", "sign-flip", "permute"}
        auto: sign flips when the regressor of interest is constant within
        every exchangeability block (e.g. an intercept), else permutations
        within blocks. An explicit scheme that cannot test a contrast is an
        error naming ``--perm-scheme``.
    n_perm, n_chunks, seed
        Patterns (identity included), chunks per contrast, seed.
    alpha : float
        Family-wise error rate of the significant maps.
    two_sided : bool
        Two-sided t tests (F contrasts are always tested on the positive side).
    cluster_forming_p : float
        Uncorrected p of the cluster-forming threshold (cluster corrections).
    mem_gb : float
        Memory budget of every node (data read in voxel chunks), and its hint.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    data_file, design_matrix, mask_file
        Masked data .npy (rows in design order), design TSV, analysis mask.
    contrasts, contrast_names, z_maps
        Contrast specifications, their labels and z maps, in the same order.
    blocks
        Exchangeability-block label of every design row, or [] for none.

    Outputs (``outputnode``), one item per contrast
    ------------------------------------------------
    logp_maps (lists of -log10 p maps), corrected_logp, null_distributions,
    significant_maps, cluster_tables, z_thresholds, plot_titles
    """
    if correction not in PERMUTATION_CORRECTIONS:
        raise ValueError(f"correction must be one of {PERMUTATION_CORRECTIONS}")
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(OUTPUT_FIELDS)),
                         name="outputnode")
    test = {"model": model, "scheme": scheme, "n_perm": n_perm, "seed": seed}
    options = {**test, "correction": correction, "two_sided": two_sided,
               "cluster_forming_p": cluster_forming_p, "mem_gb": mem_gb}
    plan = pe.Node(PlanPermutations(n_chunks=n_chunks, **test), name="plan",
                   run_without_submitting=True)
    chunks = pe.MapNode(PermutationChunk(**options), iterfield=["item"], name="chunks",
                        mem_gb=mem_gb)
    group = pe.Node(GroupChunks(), name="group", run_without_submitting=True)
    merge = pe.MapNode(MergePermutations(alpha=alpha, **options), name="merge",
                       iterfield=["contrast", "contrast_name", "z_map", "chunk_files"],
                       mem_gb=mem_gb)
    data = [("data_file", "data_file"), ("design_matrix", "design_matrix"),
            ("blocks", "blocks")]
    # fmt: off
    workflow.connect([
        (inputnode, plan, data + [("contrasts", "contrasts")]),
        (plan, chunks, [("items", "item")]),
        (inputnode, chunks, data + [("mask_file", "mask_file")]),
        (chunks, group, [("chunk_file", "chunk_files")]),
        (inputnode, group, [("contrasts", "contrasts")]),
        (group, merge, [("chunk_files", "chunk_files")]),
        (inputnode, merge, data + [("mask_file", "mask_file"), ("contrasts", "contrast"),
                                   ("contrast_names", "contrast_name"),
                                   ("z_maps", "z_map")]),
        (merge, outputnode, [(src, dst) for dst, src in OUTPUT_FIELDS.items()]),
    ])
    # fmt: on
    return workflow
