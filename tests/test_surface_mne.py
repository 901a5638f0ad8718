"""A random cluster-size plan on a mesh against MNE-Python's cluster permutation test.

``nipype-secondlevel run --correction cluster-size --surface-extent vertices`` with 16
subjects and ``--n-perm 1000`` (far fewer than the 2^16 sign flips, so the plan is random)
on a small two-hemisphere planar mesh with a real effect, compared with
``mne.stats.permutation_cluster_1samp_test`` on the same maps, with the adjacency built
here from the mesh's faces (scipy sparse), the same cluster-forming threshold
(two-sided: |t| > t.isf(p / 2, dof), as the sidecar says), ``t_power=0`` (MNE's cluster
statistic is then the signed number of vertices, our extent in vertices) and ``tail=0``.

What the two p values are: both are the FWER p of a cluster from the null distribution of
the largest cluster size over the map (positive and negative clusters together, both
hemispheres), p = mean(max >= size), both counting the identity (MNE inserts the observed
maximum as H0[0]; ours draws the identity as pattern 0). They differ in the sampling only:
ours draws 999 random sign flips (with replacement) from ``--perm-seed``, MNE draws
n_permutations - 1 distinct patterns without replacement among the 2^15 - 1 that are not
the identity or its mirror (flipping all signs gives the same |t|). Both are unbiased
Monte Carlo estimates of the same exact p (up to the identity's weight, at most 1 / n), so
they agree within 4 standard errors of the difference of two independent binomial
estimates, sqrt(p (1 - p) (1/n1 + 1/n2)) (without replacement MNE's error is smaller),
plus 1/n1 + 1/n2 for the identity counted once in each."""

import json

import nibabel as nib
import numpy as np
from scipy import sparse, stats
from surface_data import planar_mesh, smooth_sample, write_pair
from test_surface_wiring import run, write_surface, write_table

N_SUBJECTS, N_PERM, N_PERM_MNE = 16, 1000, 5000


def test_a_random_cluster_plan_on_a_mesh_agrees_with_mnes_cluster_test(tmp_path):
    import mne

    xy, faces = planar_mesh(10, 10)
    n = len(xy)
    maps = smooth_sample(np.concatenate([xy, xy + [200.0, 0, 0]]), N_SUBJECTS, seed=5,
                         effect=1.6, centre=45, width=6.0)
    surfaces = [write_surface(tmp_path / f"{h}.surf.gii", xy, faces) for h in ("left", "right")]
    pairs = [write_pair(tmp_path, f"{i:02d}", y[:n], y[n:], space="tiny")
             for i, y in enumerate(maps)]
    assert run(tmp_path, "--inputs", str(write_table(tmp_path, [left for left, _ in pairs])),
               "--surface-left", str(surfaces[0]), "--surface-right", str(surfaces[1]),
               "--correction", "cluster-size", "--surface-extent", "vertices",
               "--n-perm", str(N_PERM), "--cluster-forming-p", "0.05") == 0
    out = tmp_path / "out"
    sidecar = json.loads((out / "hemi-L_contrast-intercept_stat-t_desc-clusterSize_logp.json")
                         .read_text())
    correction = sidecar["Correction"]
    assert correction["Exhaustive"] is False and correction["NPermutations"] == N_PERM
    assert correction["Tail"] == "two-sided" and sidecar["DegreesOfFreedom"] == N_SUBJECTS - 1
    threshold = stats.t.isf(0.05 / 2, N_SUBJECTS - 1)
    assert correction["ClusterFormingThreshold"]["Value"] == np.float64(threshold).item()

    def both(name):
        return np.concatenate([nib.load(out / f"hemi-{h}_{name}.func.gii").darrays[0].data
                               for h in "LR"]).astype(float)

    # the same maps MNE sees: float32 as written, both hemispheres end to end
    data = np.stack([np.concatenate([nib.load(path).darrays[0].data for path in pair])
                     for pair in pairs]).astype(float)
    tri = np.concatenate([np.asarray(faces), np.asarray(faces) + n])
    ends = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    adjacency = sparse.coo_matrix((np.ones(len(ends)), (ends[:, 0], ends[:, 1])),
                                  shape=(2 * n, 2 * n))
    adjacency = sparse.coo_matrix((adjacency + adjacency.T) > 0)
    t_mne, clusters, p_mne, _ = mne.stats.permutation_cluster_1samp_test(
        data, threshold=threshold, n_permutations=N_PERM_MNE, tail=0, adjacency=adjacency,
        t_power=0, rng=np.random.default_rng(0), out_type="indices", verbose=False)
    t_ours = both("contrast-intercept_stat-t_statmap")
    np.testing.assert_allclose(t_ours, t_mne, atol=1e-4)
    assert np.min(np.abs(np.abs(t_mne) - threshold)) > 1e-3  # no vertex on the threshold

    # our clusters: the vertices with a cluster p (p < 1 here), split into connected
    # components of one sign of t over the faces' adjacency (scipy's labelling)
    logp = both("contrast-intercept_stat-t_desc-clusterSize_logp")
    found = {}
    for sign in (1, -1):
        inside = np.flatnonzero((logp > 0) & (sign * t_ours > 0))
        _, labels = sparse.csgraph.connected_components(
            adjacency.tocsr()[inside][:, inside], directed=False)
        for label in np.unique(labels):
            members = inside[labels == label]
            assert np.ptp(logp[members]) == 0  # one p per cluster
            found[frozenset(members.tolist())] = 10 ** -logp[members[0]]
    expected = {frozenset(c[0].tolist()): p for c, p in zip(clusters, p_mne)}
    assert len(expected) >= 3 and min(expected.values()) < 0.2  # an effect and small clusters
    assert set(found) == set(expected)
    for members, p in expected.items():
        bound = 4 * np.sqrt(p * (1 - p) * (1 / N_PERM + 1 / N_PERM_MNE)) \
            + 1 / N_PERM + 1 / N_PERM_MNE
        assert abs(found[members] - p) <= bound, (len(members), found[members], p, bound)
