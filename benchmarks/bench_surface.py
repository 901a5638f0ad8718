"""Benchmark: permutation inference on the cortical surface, ours vs MNE and nilearn.

Not a test; prints figures measured in one run. fsaverage5 (20,484 vertices, the
medial wall left out: 18,747 analysed), N one-sample maps of smooth noise plus a small
effect (the tests' generator), sign flips:

- ours: TFCE (E = 1, H = 2) and cluster size at t of p < 0.001 on the mesh's graph,
  ``--n-perm`` permutations each, one process, one BLAS thread;
- MNE's ``permutation_cluster_1samp_test`` with the same adjacency and cluster-forming
  threshold (``--mne-perm`` permutations, scaled to ``--n-perm``, and said so), and its
  TFCE (``threshold=dict(start=0, step=...)``) on fewer;
- nilearn's max-T on ``SurfaceImage`` (``non_parametric_inference``, its only surface
  inference), ``--n-perm`` permutations, ``n_jobs=1``.

    python benchmarks/bench_surface.py [--n-subjects 30] [--n-perm 10000] [--mne-perm 200]

MNE is optional (``pip install mne``): without it its lines are skipped.
"""

import argparse
import os
import sys
import time
import warnings
from inspect import signature
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def sample(n_subjects):
    """(domain, analysed vertices, (n, n_analysed) maps, edges among them)."""
    from surface_data import smooth_sample

    from nipype_secondlevel.io.domains import domain_graph_edges
    from nipype_secondlevel.io.surfaces import SurfaceDomain

    domain = SurfaceDomain.fsaverage5()
    keep = domain.support()
    maps = smooth_sample(domain.coordinates(), n_subjects, seed=0, effect=0.8, centre=2000)
    return domain, keep, maps[:, keep], domain_graph_edges(domain, keep)


def timed(function):
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def ours(maps, edges, n_perm, correction, threshold):
    from nipype_secondlevel.stats import permutation as perm
    from nipype_secondlevel.stats.spatial import (
        TFCE_SURFACE_E,
        TFCE_SURFACE_H,
        graph_from_edges,
    )

    graph = graph_from_edges(edges, maps.shape[1])
    options = perm.PermutationOptions(
        cluster_threshold=threshold if correction == "cluster" else None,
        tfce=correction == "tfce", tfce_E=TFCE_SURFACE_E, tfce_H=TFCE_SURFACE_H)
    return timed(lambda: perm.permutation_test(maps, mask=graph, n_perm=n_perm,
                                               n_chunks=1, options=options))


def mne_test(maps, edges, n_perm, threshold):
    from mne.stats import permutation_cluster_1samp_test
    from scipy import sparse

    n = maps.shape[1]
    adjacency = sparse.coo_matrix((np.ones(len(edges)), tuple(edges.T)), shape=(n, n))
    adjacency = (adjacency + adjacency.T).tocoo()
    seed = {"rng" if "rng" in signature(permutation_cluster_1samp_test).parameters
            else "seed": 0}
    return timed(lambda: permutation_cluster_1samp_test(
        maps, threshold=threshold, n_permutations=n_perm, adjacency=adjacency, n_jobs=1,
        tail=0, out_type="mask", verbose=False, **seed))


def nilearn_max_t(domain, keep, maps, n_perm):
    import pandas as pd
    from nilearn.datasets import load_fsaverage
    from nilearn.glm.second_level import non_parametric_inference
    from nilearn.surface import SurfaceImage

    mesh = load_fsaverage("fsaverage5")["pial"]
    n_left = mesh.parts["left"].n_vertices
    full = np.zeros((len(maps), keep.size))
    full[:, keep] = maps
    images = [SurfaceImage(mesh=mesh, data={"left": row[:n_left], "right": row[n_left:]})
              for row in full]
    mask = SurfaceImage(mesh=mesh, data={"left": keep[:n_left].astype(np.int8),
                                         "right": keep[n_left:].astype(np.int8)})
    design = pd.DataFrame({"intercept": np.ones(len(maps))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timed(lambda: non_parametric_inference(
            images, design_matrix=design, mask=mask, n_perm=n_perm, two_sided_test=True,
            n_jobs=1, random_state=0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=30, help="maps per run")
    parser.add_argument("--n-perm", type=int, default=10_000,
                        help="our permutations (cluster and TFCE)")
    parser.add_argument("--mne-perm", type=int, default=200,
                        help="MNE permutations (scaled to --n-perm)")
    parser.add_argument("--nilearn-perm", type=int, default=200,
                        help="nilearn max-T permutations (scaled to --n-perm)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from scipy import stats

    domain, keep, maps, edges = sample(args.n_subjects)
    threshold = float(stats.t.isf(0.001 / 2, args.n_subjects - 1))
    print(f"fsaverage5, {keep.sum():,} vertices analysed, N = {args.n_subjects}, "
          f"load average {os.getloadavg()[0]:.1f}")
    seconds = {}
    for correction in ("tfce", "cluster"):
        ours(maps, edges, 16, correction, threshold)  # compile the kernels
        seconds[correction], _ = ours(maps, edges, args.n_perm, correction, threshold)
        print(f"ours {correction}: {args.n_perm:,} permutations in "
              f"{seconds[correction]:.1f} s")
    try:
        import mne  # noqa: F401
    except ImportError:
        print("MNE not installed: its lines skipped")
    else:
        mne_seconds, _ = mne_test(maps, edges, args.mne_perm, threshold)
        scaled = mne_seconds * args.n_perm / args.mne_perm
        print(f"MNE cluster: {args.mne_perm:,} permutations in {mne_seconds:.1f} s, scaled "
              f"to {args.n_perm:,}: {scaled:.0f} s = {scaled / seconds['cluster']:.0f}x ours")
        tfce_perm = max(args.mne_perm // 10, 10)
        mne_tfce, _ = mne_test(maps, edges, tfce_perm, {"start": 0, "step": 0.2})
        scaled = mne_tfce * args.n_perm / tfce_perm
        print(f"MNE TFCE (step 0.2): {tfce_perm:,} permutations in {mne_tfce:.1f} s, scaled "
              f"to {args.n_perm:,}: {scaled:.0f} s = {scaled / seconds['tfce']:.0f}x ours")
    nilearn_seconds, _ = nilearn_max_t(domain, keep, maps, args.nilearn_perm)
    scaled = nilearn_seconds * args.n_perm / args.nilearn_perm
    print(f"nilearn max-T on SurfaceImage: {args.nilearn_perm:,} permutations in "
          f"{nilearn_seconds:.1f} s, scaled to {args.n_perm:,}: {scaled:.0f} s "
          f"(ours gives max-T with either correction)")


if __name__ == "__main__":
    main()
