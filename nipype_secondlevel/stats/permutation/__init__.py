"""Permutation inference (sign flips, permutations, Freedman-Lane) with FWER control.

Arrays only: data are (n_rows, n_voxels), given as an array or as
:class:`VoxelColumns` read by voxel chunks; a 3D boolean ``mask`` places the
voxels for cluster and TFCE statistics. Work is split into chunks of pattern
indices that a workflow can run as separate jobs::

    model = linear_model(X, contrast)                 # t (one row) or F (rows)
    scheme = choose_scheme(model, "auto", blocks)     # sign flips or permutations
    plan = plan_permutations(n, 10000, scheme, seed=42, blocks=blocks)
    opts = PermutationOptions(tail="two-sided", cluster_threshold=3.0, tfce=True)
    chunks = [null_chunk(model, Y, plan, a, b, mask, opts, mem_gb=1)
              for a, b in chunk_bounds(plan.n_perm, 8)]          # any split
    observed = observed_maps(model, Y, plan, mask, opts)
    result = merge_null_chunks(observed, chunks, opts)

Modules: :mod:`.plans` (patterns, exchangeability blocks), :mod:`.model`
(Freedman-Lane t and F), :mod:`.sign_tables` (numba kernels and their numpy
reference), :mod:`.chunks` (null chunks and observed maps by voxel chunks),
:mod:`.repeats` (each distinct pattern computed once), :mod:`.merge` (p values),
:mod:`.accel` (PALM's tail and gamma approximations of FWER p values:
``merge_null_chunks(..., accel="tail")``).
"""

import importlib

#: Submodule of every name of the package, imported on first use (PEP 562): planning
#: a run needs :mod:`.plans` only, not the numba kernels nor scipy.stats.
_NAMES = {
    "accel": ("ACCELERATIONS", "accelerated_fwer"),
    "chunks": ("TIE_RTOL", "NullChunk", "ObservedMaps", "PermutationOptions", "VoxelColumns",
               "null_chunk", "observed_maps", "tail_statistic", "uses_sign_tables"),
    "merge": ("PermutationResult", "fwer_pvalues", "merge_null_chunks", "permutation_test"),
    "model": ("LinearModel", "choose_scheme", "cluster_forming_threshold", "linear_model",
              "one_sample_model", "partition_design", "prepare_data"),
    "plans": ("RANDOM_BLOCK", "SCHEMES", "PermutationPlan", "chunk_bounds",
              "n_possible_patterns", "plan_patterns", "plan_permutations", "row_permutations",
              "sign_flip_patterns", "worthwhile_chunks"),
}
_MODULE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name):
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE))
