"""Cortical meshes: GIFTI surfaces, nilearn's bundled fsaverage5, its medial wall, and
the geometry the surface domain needs (the edges of the mesh, the area of each vertex).

A mesh is a hemisphere's vertex coordinates (mm) and its triangles. fsaverage5 is read
from the files nilearn ships (no network); any other mesh from the user's ``.surf.gii``.
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import bad_input

#: Hemispheres, in the order of the domain's elements (left vertices first).
HEMISPHERES = ("left", "right")
#: The template whose meshes and medial wall come with the package's dependencies.
FSAVERAGE5 = "fsaverage5"
#: Vertices per hemisphere of fsaverage5 (an icosahedron subdivided 5 times).
FSAVERAGE5_VERTICES = 10242
#: The medial wall of fsaverage5 (vertex indices per hemisphere, with their source).
MEDIAL_WALL_FILE = Path(__file__).parent.parent / "data" / "fsaverage5_medial_wall.json"


@dataclass(frozen=True)
class Mesh:
    """A triangulated surface of one hemisphere.

    Attributes
    ----------
    coordinates : ndarray of float (n_vertices, 3)
        Vertex positions in mm.
    faces : ndarray of int64 (n_faces, 3)
        Vertex indices of every triangle.
    source : str
        Where it was read from (a file, or nilearn's fsaverage5), for the sidecars.
    """

    coordinates: np.ndarray
    faces: np.ndarray
    source: str

    @property
    def n_vertices(self):
        """Number of vertices."""
        return self.coordinates.shape[0]


def load_surface(path, what="surface"):
    """Read a GIFTI surface (``.surf.gii``: a pointset and a triangle array) as a Mesh.

    Refused in one line naming the file: missing, unreadable, without exactly one
    pointset and one triangle array, or with triangles naming absent vertices.
    """
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    try:
        img = nib.load(path)
        points = img.get_arrays_from_intent("NIFTI_INTENT_POINTSET")
        triangles = img.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")
    except Exception as err:  # nibabel raises many types for bad files
        raise bad_input(f"{what} {path}", f"not a readable GIFTI surface ({err})") from err
    if len(points) != 1 or len(triangles) != 1:
        raise bad_input(f"{what} {path}", f"a surface holds one pointset and one triangle "
                        f"array, this file {len(points)} and {len(triangles)}; give a "
                        f".surf.gii mesh (e.g. midthickness)")
    coordinates = np.asarray(points[0].data, dtype=float)
    faces = np.asarray(triangles[0].data, dtype=np.int64)
    if (coordinates.ndim != 2 or coordinates.shape[1] != 3 or faces.ndim != 2
            or faces.shape[1] != 3 or not np.all(np.isfinite(coordinates))):
        raise bad_input(f"{what} {path}", "its pointset must be finite (n, 3) coordinates and "
                        "its triangles (m, 3) vertex indices")
    if faces.size and (faces.min() < 0 or faces.max() >= len(coordinates)):
        raise bad_input(f"{what} {path}", f"its triangles name vertices outside 0.."
                        f"{len(coordinates) - 1}")
    return Mesh(coordinates, faces, str(path.absolute()))


@cache
def fsaverage5_mesh(hemisphere, kind="midthickness"):
    """fsaverage5's mesh of one hemisphere from the files nilearn ships (no network).

    Parameters
    ----------
    hemisphere : {"left", "right"}
    kind : {"midthickness", "pial", "white_matter", "inflated", "sphere"}
        "midthickness" is the mean of the white and pial vertex positions (the
        surface half-way through the cortex, as HCP's midthickness), used for
        vertex areas and peak coordinates; "inflated" for pictures.

    Returns
    -------
    Mesh
    """
    from nilearn.datasets import load_fsaverage

    meshes = load_fsaverage(FSAVERAGE5)
    if kind == "midthickness":
        white = meshes["white_matter"].parts[hemisphere]
        pial = meshes["pial"].parts[hemisphere]
        coordinates = (np.asarray(white.coordinates, float) + pial.coordinates) / 2.0
        faces = white.faces
    else:
        part = meshes[kind].parts[hemisphere]
        coordinates, faces = part.coordinates, part.faces
    return Mesh(np.asarray(coordinates, dtype=float), np.asarray(faces, dtype=np.int64),
                f"nilearn fsaverage5 {kind} ({hemisphere})")


@cache
def _medial_wall_table():
    return json.loads(MEDIAL_WALL_FILE.read_text())


def fsaverage5_medial_wall(hemisphere):
    """Boolean (10242,): True on fsaverage5's medial wall (see the data file's sources)."""
    wall = np.zeros(FSAVERAGE5_VERTICES, dtype=bool)
    wall[_medial_wall_table()[hemisphere]] = True
    return wall


def medial_wall_source():
    """The medial wall's description and sources, for sidecars."""
    table = _medial_wall_table()
    return {"Description": table["Description"], "Sources": table["Sources"]}


def mesh_edges(faces):
    """Every edge of a triangle mesh once: (n_edges, 2) int64 pairs i < j, sorted."""
    faces = np.asarray(faces, dtype=np.int64)
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def vertex_areas(mesh):
    """Area of every vertex in mm^2: a third of the area of each triangle it belongs to.

    area(v) = sum over faces f containing v of |(b - a) x (c - a)| / 6
    (the barycentric dual area; PALM's ``palm_calcarea``), so the vertex areas add up to
    the mesh's area.
    """
    a, b, c = (mesh.coordinates[mesh.faces[:, k]] for k in range(3))
    third = np.linalg.norm(np.cross(b - a, c - a), axis=1) / 6.0
    return np.bincount(mesh.faces.ravel(), weights=np.repeat(third, 3),
                       minlength=mesh.n_vertices)
