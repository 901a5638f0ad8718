"""Clusters and TFCE on a mesh and on CIFTI grayordinates: the kernels, unchanged, on a
graph built from an edge list, against scipy's connected components and a brute-force
TFCE written here; extents counted in vertices and summed as vertex areas (mm^2, a third
of each adjacent triangle's area, computed here from the faces)."""

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
    return edges, int(keep.sum()), values, _face_areas(domain)[keep]


def _face_areas(domain):
    """Every vertex's area: a third of each triangle it belongs to, by Heron's formula."""
    areas = []
    for hemi in ("left", "right"):
        mesh = domain.meshes[hemi]
        corners = mesh.coordinates[mesh.faces]
        a, b, c = (np.linalg.norm(corners[:, i] - corners[:, j], axis=1)
                   for i, j in ((0, 1), (1, 2), (2, 0)))
        s = (a + b + c) / 2
        third = np.sqrt(np.maximum(s * (s - a) * (s - b) * (s - c), 0)) / 3
        area = np.zeros(mesh.n_vertices)
        for corner in range(3):
            np.add.at(area, mesh.faces[:, corner], third)
        areas.append(area)
    return np.concatenate(areas)


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
    edges, n, values, areas = fsaverage5
    graph = spatial.graph_from_edges(edges, n)
    weighted = spatial.graph_from_edges(edges, n, weights=areas)
    threshold = 1.0
    size, mass = spatial.cluster_maps(values, graph, threshold, tail)
    area, area_mass = spatial.cluster_maps(values, weighted, threshold, tail)
    expected_size, expected_mass, expected_area = np.zeros(n), np.zeros(n), np.zeros(n)
    for sign in (1, -1) if tail == "two-sided" else (1,):
        labels = _components(edges, n, sign * values > threshold)
        for label in np.unique(labels[labels >= 0]):
            members = labels == label
            expected_size[members] = members.sum()
            expected_area[members] = areas[members].sum()
            expected_mass[members] = np.sum(sign * values[members] - threshold)
    assert expected_size.max() > 50 and len(np.unique(expected_size)) > 5
    np.testing.assert_array_equal(size, expected_size)
    np.testing.assert_allclose(mass, expected_mass, rtol=1e-12)
    assert size.dtype == np.int64 and area.dtype == float
    np.testing.assert_allclose(area, expected_area, rtol=1e-9)
    np.testing.assert_array_equal(area_mass, mass)  # masses are not weighted (as PALM)
    assert spatial.max_cluster_measures(values, graph, threshold, tail) == (
        expected_size.max(), pytest.approx(expected_mass.max(), rel=1e-12))
    assert spatial.max_cluster_measures(values, weighted, threshold, tail)[0] == \
        pytest.approx(expected_area.max(), rel=1e-9)
    # the areas are no multiple of the counts: weighting changes the numbers
    assert not np.allclose(expected_area, expected_size * areas.mean(), rtol=0.05)


def _brute_tfce(values, edges, n, E, H, areas=None):
    """tfce(v) = sum over h_k <= |v| of size(component of v in {|x| >= h_k})^E h_k^H,
    each sign on its own, thresholds as nilearn (100 steps up to max |value|); size is
    the component's number of elements, or the sum of their ``areas``."""
    out = np.zeros(n)
    thresholds = np.linspace(0, np.abs(values).max(), 101)[1:]
    for sign in (1, -1):
        for h in thresholds:
            labels = _components(edges, n, sign * values >= h)
            inside = labels >= 0
            counts = np.bincount(labels[inside], minlength=1,
                                 weights=None if areas is None else areas[inside])
            out[inside] += sign * counts[labels[inside]] ** E * h ** H
    return out


@pytest.mark.parametrize("extent", ["vertices", "area"])
def test_tfce_on_the_mesh_is_the_brute_force_sum_over_thresholds(fsaverage5, extent):
    edges, n, values, areas = fsaverage5
    areas = areas if extent == "area" else None
    graph = spatial.graph_from_edges(edges, n, weights=areas)
    E, H = spatial.TFCE_SURFACE_E, spatial.TFCE_SURFACE_H
    expected = _brute_tfce(values, edges, n, E, H, areas)
    ours = spatial.tfce_map(values, graph, "two-sided", E=E, H=H)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    assert spatial.max_tfce(values, graph, E=E, H=H) == pytest.approx(np.abs(expected).max(),
                                                                      rel=1e-12)
    maxima = spatial.tfce_maxima(np.stack([values, -values[::-1]]), graph, E=E, H=H)
    assert maxima[0] == pytest.approx(np.abs(expected).max(), rel=1e-12)


def test_unit_weights_give_the_counts_bits():
    """weights of 1 take the weighted kernels' path and give the unweighted numbers."""
    rng = np.random.default_rng(1)
    edges = rng.integers(0, 300, size=(900, 2))
    values = rng.standard_normal((3, 300)) * 2
    plain = spatial.graph_from_edges(edges, 300)
    ones = spatial.graph_from_edges(edges, 300, weights=np.ones(300))
    np.testing.assert_array_equal(spatial.tfce_map(values[0], plain, E=0.5),
                                  spatial.tfce_map(values[0], ones, E=0.5))
    np.testing.assert_array_equal(spatial.tfce_maxima(values, plain),
                                  spatial.tfce_maxima(values, ones))
    np.testing.assert_array_equal(spatial.cluster_maxima(values, plain, 1.0)[0],
                                  spatial.cluster_maxima(values, ones, 1.0)[0])


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
