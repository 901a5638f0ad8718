"""Benchmark: permutation inference on the cortical surface, ours vs MNE and nilearn.

Not a test; prints figures measured in one run, each with the load average. N one-sample
maps of smooth noise plus a small effect (the tests' generator), sign flips, one
process, one BLAS thread:

- fsaverage5 (20,484 vertices, the medial wall left out: 18,747 analysed): our TFCE
  (E = 1, H = 2, extent in mm² of vertex area, the default) ``--n-perm`` permutations;
  MNE's TFCE (``threshold=dict(start=0, step=0.2)``, vertex counts) on
  ``--mne-tfce-perm``, scaled; nilearn's max-T on ``SurfaceImage``
  (``non_parametric_inference``, its only surface inference) on ``--nilearn-perm``,
  scaled.
- an fsLR 32k-sized mesh: 29,696 + 29,716 vertices (fsLR 32k's cortex without its
  medial wall, 59,412), each hemisphere the convex hull of as many Fibonacci points on a
  sphere of fsLR's midthickness area (about 900 cm², a generated mesh: no fsLR surface is
  available offline); our cluster size at t of p < 0.001, ``--n-perm`` permutations,
  counting vertices (MNE's statistic) and in mm² (the default); MNE's
  ``permutation_cluster_1samp_test`` with the same adjacency and threshold on
  ``--mne-perm``, scaled.

    python benchmarks/bench_surface.py [--n-subjects 30] [--n-perm 10000] [--mne-perm 100]

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


#: fsLR 32k's cortical vertices per hemisphere (its CIFTI brain models' CORTEX_LEFT/RIGHT).
FSLR_CORTEX = (29_696, 29_716)
#: Midthickness area of one fsLR 32k hemisphere, roughly (mm^2).
FSLR_AREA = 90_000.0


def sample(n_subjects):
    """fsaverage5: (domain, analysed vertices, (n, n_analysed) maps, edges among them,
    their areas)."""
    from surface_data import smooth_sample

    from nipype_secondlevel.io.domains import domain_graph_edges
    from nipype_secondlevel.io.surfaces import SurfaceDomain

    domain = SurfaceDomain.fsaverage5()
    keep = domain.support()
    maps = smooth_sample(domain.coordinates(), n_subjects, seed=0, effect=0.8, centre=2000)
    return (domain, keep, maps[:, keep], domain_graph_edges(domain, keep),
            domain.vertex_areas()[keep])


def fslr_sized_sample(n_subjects):
    """The fsLR 32k-sized mesh of the module notes: ((n, 59,412) maps, edges, areas)."""
    from scipy.spatial import ConvexHull
    from surface_data import smooth_sample

    from nipype_secondlevel.io.meshes import Mesh, mesh_edges, vertex_areas

    radius = np.sqrt(FSLR_AREA / (4 * np.pi))
    xyz, edges, areas = [], [], []
    for hemi, n in enumerate(FSLR_CORTEX):
        k = np.arange(n) + 0.5  # Fibonacci points: nearly even spacing on the sphere
        z = 1 - 2 * k / n
        phi = np.pi * (1 + 5 ** 0.5) * k
        points = radius * np.column_stack([np.sqrt(1 - z * z) * np.cos(phi),
                                           np.sqrt(1 - z * z) * np.sin(phi), z])
        faces = ConvexHull(points).simplices
        offset = sum(FSLR_CORTEX[:hemi])
        edges.append(mesh_edges(faces) + offset)
        areas.append(vertex_areas(Mesh(points, faces, "generated")))
        xyz.append(points + [250.0 * hemi, 0, 0])
    maps = smooth_sample(np.concatenate(xyz), n_subjects, seed=1, effect=0.8, centre=5000)
    return maps, np.concatenate(edges), np.concatenate(areas)


def load():
    """The 1-minute load average, for the printed lines."""
    return f"load {os.getloadavg()[0]:.1f}"


def timed(function):
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def ours(maps, edges, n_perm, correction, threshold, areas=None):
    from nipype_secondlevel.stats import permutation as perm
    from nipype_secondlevel.stats.spatial import (
        TFCE_SURFACE_E,
        TFCE_SURFACE_H,
        graph_from_edges,
    )

    graph = graph_from_edges(edges, maps.shape[1], weights=areas)
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
    """nilearn's max-T on fsaverage5's ``SurfaceImage``."""
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
    parser.add_argument("--mne-perm", type=int, default=100,
                        help="MNE cluster permutations on the fsLR-sized mesh (scaled)")
    parser.add_argument("--mne-tfce-perm", type=int, default=20,
                        help="MNE TFCE permutations on fsaverage5 (scaled)")
    parser.add_argument("--nilearn-perm", type=int, default=200,
                        help="nilearn max-T permutations (scaled to --n-perm)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from scipy import stats

    try:
        import mne
    except ImportError:
        mne = None
        print("MNE not installed: its lines skipped")
    threshold = float(stats.t.isf(0.001 / 2, args.n_subjects - 1))
    n = args.n_perm

    def scaled(name, seconds, n_run, ours_seconds=None):
        total = seconds * n / n_run
        ratio = f" = {total / ours_seconds:.0f}x ours" if ours_seconds else ""
        print(f"  {name}: {n_run:,} permutations in {seconds:.1f} s, scaled to {n:,}: "
              f"{total:.0f} s{ratio} ({load()})")

    domain, keep, maps, edges, areas = sample(args.n_subjects)
    print(f"fsaverage5, {keep.sum():,} vertices analysed, N = {args.n_subjects} ({load()})")
    ours(maps, edges, 16, "tfce", threshold, areas)  # compile the kernels
    tfce, _ = ours(maps, edges, n, "tfce", threshold, areas)
    print(f"  ours TFCE (mm2): {n:,} permutations in {tfce:.1f} s ({load()})")
    if mne:
        seconds, _ = mne_test(maps, edges, args.mne_tfce_perm, {"start": 0, "step": 0.2})
        scaled("MNE TFCE (step 0.2, vertices)", seconds, args.mne_tfce_perm, tfce)
    seconds, _ = nilearn_max_t(domain, keep, maps, args.nilearn_perm)
    scaled("nilearn max-T on SurfaceImage (ours gives max-T with either correction)",
           seconds, args.nilearn_perm)

    maps, edges, areas = fslr_sized_sample(args.n_subjects)
    print(f"fsLR 32k-sized generated mesh, {maps.shape[1]:,} vertices, N = "
          f"{args.n_subjects}, cluster-forming |t| > {threshold:.2f} ({load()})")
    clusters = {}
    for extent, weights in (("vertices", None), ("mm2", areas)):
        ours(maps, edges, 16, "cluster", threshold, weights)  # compile the kernels
        clusters[extent], _ = ours(maps, edges, n, "cluster", threshold, weights)
        print(f"  ours cluster size ({extent}): {n:,} permutations in "
              f"{clusters[extent]:.1f} s ({load()})")
    if mne:
        seconds, _ = mne_test(maps, edges, args.mne_perm, threshold)
        scaled("MNE cluster (vertices)", seconds, args.mne_perm, clusters["vertices"])


if __name__ == "__main__":
    main()
