"""Null simulations on the cortical surface: family-wise error rate of cluster-size,
TFCE and max-T permutation inference on fsaverage5's mesh.

Not a test. Each simulation draws N one-sample maps with no effect over fsaverage5's
vertices (a few random Gaussian bumps of 12 mm plus white noise per map, as the tests'
generator; symmetric about 0, so sign flips are exact), leaves the medial wall out, runs
the permutation test on the mesh's neighbour graph (both hemispheres one family; TFCE
with E = 1, H = 2; cluster-forming p < 0.001; cluster extents in mm² of vertex area, the
default, or in vertices with ``--extent vertices``) and records whether any vertex is declared
significant at alpha = 0.05. The observed rates are printed with their Clopper-Pearson
95% interval and the central 95% binomial interval expected if the true FWER is 0.05.

    python validation/surface_fwer_null_simulation.py [--n-sim 200] [--n-perm 200]
        [--extent area|vertices]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from fwer_null_simulation import ALPHA, print_expected_interval, print_rates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

N_SUBJECTS = 12


def main(n_sim, n_perm, extent):
    from surface_data import smooth_sample

    from nipype_secondlevel.io.domains import domain_graph_edges
    from nipype_secondlevel.io.surfaces import SurfaceDomain
    from nipype_secondlevel.stats import permutation as perm
    from nipype_secondlevel.stats.spatial import (
        TFCE_SURFACE_E,
        TFCE_SURFACE_H,
        graph_from_edges,
    )

    domain = SurfaceDomain.fsaverage5()
    keep = domain.support()
    graph = graph_from_edges(domain_graph_edges(domain, keep), int(keep.sum()),
                             weights=domain.vertex_areas()[keep] if extent == "area" else None)
    xyz = domain.coordinates()
    model = perm.linear_model(None, None, n_subjects=N_SUBJECTS)
    options = perm.PermutationOptions(
        tfce=True, tfce_E=TFCE_SURFACE_E, tfce_H=TFCE_SURFACE_H,
        cluster_threshold=perm.cluster_forming_threshold(model, 0.001, "two-sided"))
    print(f"{n_sim} null simulations, fsaverage5 ({int(keep.sum()):,} vertices off the "
          f"medial wall), N = {N_SUBJECTS}, {n_perm} random sign flips each, extents in "
          f"{extent}")
    print_expected_interval(n_sim)
    errors = {"max-T": 0, "cluster size": 0, "cluster mass": 0, "TFCE": 0}
    cut = -np.log10(ALPHA)
    start = time.perf_counter()
    for sim in range(n_sim):
        Y = smooth_sample(xyz, N_SUBJECTS, seed=10_000 + sim)[:, keep]
        result = perm.permutation_test(Y, mask=graph, n_perm=n_perm, seed=sim, n_chunks=1,
                                       options=options)
        for method, logp in (("max-T", result.logp_max),
                             ("cluster size", result.logp_cluster_size),
                             ("cluster mass", result.logp_cluster_mass),
                             ("TFCE", result.logp_tfce)):
            errors[method] += int(logp.max() >= cut)
    print(f"({time.perf_counter() - start:.0f} s)")
    print_rates(errors, n_sim)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=200, help="null simulations")
    parser.add_argument("--n-perm", type=int, default=200, help="random sign flips per test")
    parser.add_argument("--extent", choices=("area", "vertices"), default="area",
                        help="cluster extent (size, TFCE): mm² of vertex area or vertices")
    args = parser.parse_args()
    main(args.n_sim, args.n_perm, args.extent)
