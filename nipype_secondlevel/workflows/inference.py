"""Permutation inference sub-workflow: chunks (a MapNode) and merges (a MapNode), as the
plan decided them."""

from dataclasses import asdict

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.inference import MergePermutations, PermutationChunk
from ..spec import DEFAULTS
from .surfaces import permutation_domain_value

INPUT_FIELDS = ["data_file", "design_matrix", "mask_file", "z_maps", "coverage_data"]
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


def regroup(items, sizes):
    """``items`` as consecutive lists of ``sizes`` items.

    Self-contained (no module names), so that it can serve as a Nipype connection
    function: the chunks' files, in item order, as one list per contrast.
    """
    groups, start = [], 0
    for size in sizes:
        groups.append(list(items[start:start + size]))
        start += size
    return groups


def init_permutation_wf(plan, mem_gb=DEFAULTS["mem_gb"], name="permutation_wf"):
    """Permutation tests of the plan's t and F contrasts, each spread over its chunks.

    The plan (:mod:`nipype_secondlevel.design.plan`) fixed every contrast's model,
    scheme and patterns (all of them when there are at most ``--n-perm``, else
    ``--n-perm`` random ones) and its chunks of pattern indices. ``chunks`` is a
    MapNode over the (contrast, chunk) items (MultiProc and clusters run them in
    parallel; each item is cached on its own, so adding a contrast at the end of the
    list computes only its items); ``merge`` is a MapNode over the contrasts, given
    each contrast's chunk files. The p values do not depend on the chunks nor on
    ``mem_gb``. Every contrast gets voxel-wise max-T (max-F) and uncorrected -log10 p
    maps; ``cluster-size``/``cluster-mass`` add cluster inference at the plan's
    cluster-forming threshold, ``tfce`` adds TFCE (E = 0.5, H = 2). The plan's ``accel``
    takes the family-wise p values from a fit to the null maxima (PALM's tail or gamma
    approximations, :mod:`nipype_secondlevel.stats.permutation.accel`).

    Parameters
    ----------
    plan : Plan
        With a permutation ``correction``; its ``alpha`` is the family-wise error rate
        of the significant maps.
    mem_gb : float
        Memory budget (data read in voxel chunks) and hint of the merge; a contrast's
        chunks, which run at once, share it (each ``mem_gb`` / its number of chunks).
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    data_file, design_matrix, mask_file
        Masked data .npy (rows in design order), design TSV, analysis mask.
    coverage_data
        With missing values (else undefined): the masked data with NaN where a value is
        missing; each voxel is tested with its present subjects.
    z_maps
        The contrasts' z maps, in the plan's contrast order.

    Outputs (``outputnode``), one item per contrast
    ------------------------------------------------
    logp_maps (lists of -log10 p maps), corrected_logp, null_distributions,
    significant_maps, cluster_tables, z_thresholds, plot_titles
    """
    if not plan.permutations:
        raise ValueError(f"the plan's correction {plan.options['correction']} is not a "
                         "permutation test")
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(OUTPUT_FIELDS)),
                         name="outputnode")
    contrasts = [asdict(c) for c in plan.contrasts]
    options = {"correction": plan.options["correction"], "mem_gb": mem_gb,
               "min_subjects": plan.min_subjects}
    # a contrast's chunks run at once (one per process): they share the memory budget
    chunk_gb = mem_gb / max(len(c["permutations"]["chunks"]) for c in contrasts)
    chunks = pe.MapNode(PermutationChunk(**{**options, "mem_gb": chunk_gb}),
                        iterfield=["item"], name="chunks", mem_gb=chunk_gb)
    chunks.inputs.item = [{"contrast": c, "start": start, "stop": stop}
                          for c in contrasts for start, stop in c["permutations"]["chunks"]]
    merge = pe.MapNode(MergePermutations(alpha=plan.options["alpha"],
                                         accel=plan.options["accel"], **options),
                       name="merge", iterfield=["contrast", "z_map", "chunk_files"],
                       mem_gb=mem_gb)
    merge.inputs.contrast = contrasts
    if plan.domain != "volume":  # clusters and TFCE on the domain's neighbour graph
        chunks.inputs.domain = merge.inputs.domain = permutation_domain_value(plan)
    sizes = [len(c["permutations"]["chunks"]) for c in contrasts]
    data = [("data_file", "data_file"), ("design_matrix", "design_matrix"),
            ("mask_file", "mask_file"), ("coverage_data", "coverage_data")]
    # fmt: off
    workflow.connect([
        (inputnode, chunks, data),
        (chunks, merge, [(("chunk_file", regroup, sizes), "chunk_files")]),
        (inputnode, merge, [*data, ("z_maps", "z_map")]),
        (merge, outputnode, [(src, dst) for dst, src in OUTPUT_FIELDS.items()]),
    ])
    # fmt: on
    return workflow
