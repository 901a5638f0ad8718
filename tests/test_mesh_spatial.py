"""Clusters and TFCE on a mesh and on CIFTI grayordinates: the kernels, unchanged, on a
graph built from an edge list, against scipy's connected components and a brute-force
TFCE written here."""

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse import csgraph
from surface_data import cifti_layout, smooth_sample

from nipype_secondlevel.io import cifti, meshes, surfaces
from nipype_secondlevel.stats import spatial


@pytest.fixture(scope="module")
def fsaverage5():
    domain = surfaces.SurfaceDomain.fsaverage5()
    keep = domain.support()
    index = np.cumsum(keep) - 1
    edges = domain.edges()
    edges = index[edges[np.all(keep[edges], axis=1)]]  # the mesh without its medial wall
    values = smooth_sample(domain.coordinates()[keep], 1, seed=3)[0] * 2.0
    return edges, int(keep.sum()), values


def _components(edges, n, inside):
    """Labels (-1 outside) of the connected components of the elements ``inside``."""
    keep = edges[inside[edges[:, 0]] & inside[edges[:, 1]]]
    graph = sparse.coo_matrix((np.ones(len(keep)), tuple(keep.T)), shape=(n, n))
    labels = csgraph.connected_components(graph, directed=False)[1]
    return np.where(inside, labels, -1)


def test_the_neighbour_table_lists_every_edge_once_forward_and_twice_in_all():
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 40, size=(120, 2))
    graph = spatial.graph_from_edges(np.concatenate([edges, edges[:5, ::-1]]), 41)
    pairs = {tuple(sorted(e)) for e in edges.tolist() if e[0] != e[1]}
    for v in range(41):
        row = graph.neighbours[v][graph.neighbours[v] < 41]
        assert sorted(row) == sorted({b for a, b in pairs if a == v} |
                                     {a for a, b in pairs if b == v})
    forward = {(v, int(u)) for v in range(41) for u in graph.forward[v] if u < 41}
    assert forward == pairs and graph.n_elements == 41
    assert (graph.neighbours[40] == 41).all()  # an element without neighbours


@pytest.mark.parametrize("tail", ["two-sided", "positive"])
def test_clusters_on_the_mesh_are_scipys_connected_components(fsaverage5, tail):
    edges, n, values = fsaverage5
    graph = spatial.graph_from_edges(edges, n)
    threshold = 1.0
    size, mass = spatial.cluster_maps(values, graph, threshold, tail)
    expected_size, expected_mass = np.zeros(n), np.zeros(n)
    for sign in (1, -1) if tail == "two-sided" else (1,):
        labels = _components(edges, n, sign * values > threshold)
        for label in np.unique(labels[labels >= 0]):
            members = labels == label
            expected_size[members] = members.sum()
            expected_mass[members] = np.sum(sign * values[members] - threshold)
    assert expected_size.max() > 50 and len(np.unique(expected_size)) > 5
    np.testing.assert_array_equal(size, expected_size)
    np.testing.assert_allclose(mass, expected_mass, rtol=1e-12)
    assert spatial.max_cluster_measures(values, graph, threshold, tail) == (
        expected_size.max(), pytest.approx(expected_mass.max(), rel=1e-12))


def _brute_tfce(values, edges, n, E, H):
    """tfce(v) = sum over h_k <= |v| of size(component of v in {|x| >= h_k})^E h_k^H,
    each sign on its own, thresholds as nilearn (100 steps up to max |value|)."""
    out = np.zeros(n)
    thresholds = np.linspace(0, np.abs(values).max(), 101)[1:]
    for sign in (1, -1):
        for h in thresholds:
            labels = _components(edges, n, sign * values >= h)
            counts = np.bincount(labels[labels >= 0], minlength=1)
            inside = labels >= 0
            out[inside] += sign * counts[labels[inside]] ** E * h ** H
    return out


def test_tfce_on_the_mesh_is_the_brute_force_sum_over_thresholds(fsaverage5):
    edges, n, values = fsaverage5
    graph = spatial.graph_from_edges(edges, n)
    E, H = spatial.TFCE_SURFACE_E, spatial.TFCE_SURFACE_H
    expected = _brute_tfce(values, edges, n, E, H)
    ours = spatial.tfce_map(values, graph, "two-sided", E=E, H=H)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    assert spatial.max_tfce(values, graph, E=E, H=H) == pytest.approx(np.abs(expected).max(),
                                                                      rel=1e-12)


def test_clusters_and_tfce_on_cifti_grayordinates_join_voxels_not_vertices_to_voxels():
    layout = cifti_layout()
    domain = cifti.CiftiDomain(layout, {h: meshes.fsaverage5_mesh(h) for h in ("left", "right")})
    n, edges = domain.n_elements, domain.edges()
    graph = spatial.graph_from_edges(edges, n)
    rng = np.random.default_rng(5)
    values = rng.standard_normal(n)
    voxels = ~domain.is_vertex
    values[voxels] = 3.0 + rng.random(voxels.sum())  # every voxel above threshold
    size, _ = spatial.cluster_maps(values, graph, 2.0, "positive")
    labels = _components(edges, n, values > 2.0)
    expected = np.bincount(labels[labels >= 0])[labels] * (labels >= 0)
    np.testing.assert_array_equal(size, expected)
    thalamus = domain.structures == "THALAMUS_LEFT"
    assert (size[thalamus] == 24).all() and (size[domain.structures == "PUTAMEN_RIGHT"] == 3).all()
    np.testing.assert_allclose(spatial.tfce_map(values, graph, E=1.0, H=2.0),
                               _brute_tfce(values, edges, n, 1.0, 2.0), rtol=1e-9, atol=1e-9)
