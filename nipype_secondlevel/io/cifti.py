"""The CIFTI domain: maps over grayordinates, one CIFTI-2 ``dscalar.nii`` per map.

The elements are the file's brain models in their order: cortical vertices of each
hemisphere (with their vertex indices; the medial wall is already left out) and
subcortical voxels (with their ijk on the volume of the file's affine). Every input
must have the first file's brain models. Adjacency joins cortical vertices along the
edges of the user's surfaces (needed for clusters and TFCE on the cortex) and voxels
sharing a face (6-connectivity, across structures); vertices and voxels are never
neighbours.
"""

from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import bad_input
from .files import atomic_path
from .meshes import HEMISPHERES, mesh_edges, vertex_areas

#: CIFTI's name of each hemisphere's cortex.
CORTEX = {"left": "CIFTI_STRUCTURE_CORTEX_LEFT", "right": "CIFTI_STRUCTURE_CORTEX_RIGHT"}
#: Extensions of CIFTI maps read as one map per file.
CIFTI_MAP_SUFFIXES = (".dscalar.nii", ".dtseries.nii")


def read_cifti_map(path, what="input map"):
    """The one map of a dense CIFTI-2 file: ``(values, brain_models)``.

    ``values`` is (n_grayordinates,) float64, ``brain_models`` nibabel's
    ``BrainModelAxis``. Refused in one line naming the file: missing, not a dense
    CIFTI-2 file (dscalar or dtseries), or holding several maps (a dtseries of
    several time points, a dscalar of several maps).
    """
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    try:
        img = nib.load(path)
        axes = [img.header.get_axis(i) for i in range(img.ndim)]
    except Exception as err:  # nibabel raises many types for bad files
        raise bad_input(f"{what} {path}", f"not a readable CIFTI-2 file ({err})") from err
    if (len(axes) != 2 or not isinstance(axes[1], nib.cifti2.BrainModelAxis)
            or not isinstance(axes[0], (nib.cifti2.ScalarAxis, nib.cifti2.SeriesAxis))):
        kinds = " x ".join(type(axis).__name__ for axis in axes)
        raise bad_input(f"{what} {path}", f"is a CIFTI-2 file of {kinds}, not a dense scalar "
                        "or series map (dscalar.nii, dtseries.nii)")
    if len(axes[0]) != 1:
        raise bad_input(f"{what} {path}", f"holds {len(axes[0])} maps where one is expected; "
                        "give one map per file")
    try:
        values = np.asarray(img.get_fdata(dtype=np.float64))[0]
    except Exception as err:
        raise bad_input(f"{what} {path}", "its data cannot be read (truncated or corrupted "
                        f"file?): {type(err).__name__}: {err}") from err
    return values, axes[1]


class CiftiDomain:
    """The grayordinates of one CIFTI brain-model layout, the elements of a CIFTI analysis.

    Parameters
    ----------
    brain_models : nibabel.cifti2.BrainModelAxis
        The layout every map must have (the first input's).
    meshes : dict {"left": Mesh, "right": Mesh} or None
        The surfaces of the cortical structures present (e.g. midthickness), for the
        cortex's adjacency, vertex areas and coordinates; None when none is given.
    source : str
        The file the layout was taken from, for messages.
    """

    #: Template name: a CIFTI layout carries none.
    space = None

    def __init__(self, brain_models, meshes=None, source="the first map"):
        self.brain_models = brain_models
        self.meshes = meshes or {}
        self.source = source
        for hemi, mesh in self.meshes.items():
            expected = brain_models.nvertices.get(CORTEX[hemi])
            if expected is not None and mesh.n_vertices != expected:
                raise bad_input(f"surface {mesh.source}", f"has {mesh.n_vertices} vertices, "
                                f"the {hemi} cortex of {source} {expected}: give the surface "
                                "of the maps' mesh")

    @property
    def n_elements(self):
        """Number of grayordinates."""
        return len(self.brain_models)

    @property
    def structures(self):
        """Per element, its structure, e.g. "CORTEX_LEFT", "THALAMUS_RIGHT"."""
        return np.char.replace(self.brain_models.name.astype(str), "CIFTI_STRUCTURE_", "")

    @property
    def is_vertex(self):
        """Per element, True for a cortical vertex, False for a voxel."""
        return np.asarray(self.brain_models.surface_mask)

    @property
    def local_index(self):
        """Per element, its vertex index (vertices) or "i,j,k" (voxels), as str."""
        voxels = [",".join(map(str, ijk)) for ijk in self.brain_models.voxel]
        return np.where(self.is_vertex, self.brain_models.vertex.astype(str), voxels)

    @property
    def voxel_volume(self):
        """Volume of a voxel in mm^3 (0 without voxels)."""
        affine = self.brain_models.affine
        return 0.0 if affine is None else float(abs(np.linalg.det(affine[:3, :3])))

    def support(self):
        """Elements that can be analysed: every grayordinate (the file left the rest out)."""
        return np.ones(self.n_elements, dtype=bool)

    def read(self, path, what="input map"):
        """A subject's map as (n_elements,) floats; refused in one line naming the file when
        its brain models are not the first map's."""
        values, brain_models = read_cifti_map(path, what)
        if brain_models != self.brain_models:
            raise bad_input(f"{what} {path}", f"its brain models ({_describe(brain_models)}) "
                            f"are not those of {self.source} ({_describe(self.brain_models)}): "
                            "all maps must have one grayordinate layout")
        return values

    def write(self, values, folder, name, description=None):
        """Write a (n_elements,) map as ``<name>.dscalar.nii`` with the inputs' brain models
        and one scalar map named ``description`` (or ``name``). Returns its path."""
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (self.n_elements,):
            raise ValueError(f"values must be ({self.n_elements},), got {values.shape}")
        scalars = nib.cifti2.ScalarAxis([description or name])
        img = nib.Cifti2Image(values[None, :], header=(scalars, self.brain_models))
        img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_SCALARS")
        path = Path(folder) / f"{name}.dscalar.nii"
        with atomic_path(path) as tmp:
            nib.save(img, tmp)
        return str(path.absolute())

    def _cortex(self):
        """(hemisphere, element indices, vertex indices) of each cortical structure present."""
        for hemi in HEMISPHERES:
            where = np.flatnonzero(self.brain_models.name == CORTEX[hemi])
            if where.size:
                yield hemi, where, self.brain_models.vertex[where]

    def _mesh(self, hemi):
        if hemi not in self.meshes:
            raise bad_input(f"CIFTI map {self.source}", f"cluster, TFCE and area figures on its "
                            f"{hemi} cortex need the {hemi} surface of its mesh: give "
                            f"--surface-{hemi} (GIFTI .surf.gii, e.g. midthickness)")
        return self.meshes[hemi]

    def surface_maps(self, values):
        """The cortex of a (n_elements,) map as ``{hemisphere: (mesh, values at its
        vertices)}`` (0 at vertices the layout leaves out); voxels are not on a surface."""
        out = {}
        for hemi, where, vertices in self._cortex():
            mesh = self._mesh(hemi)
            on_mesh = np.zeros(mesh.n_vertices)
            on_mesh[vertices] = np.asarray(values)[where]
            out[hemi] = (mesh, on_mesh)
        return out

    def edges(self):
        """Neighbouring elements, (n_edges, 2) int64: cortical vertices joined by an edge of
        their surface (both in the layout), voxels sharing a face."""
        parts = []
        for hemi, where, vertices in self._cortex():
            mesh = self._mesh(hemi)
            element = np.full(mesh.n_vertices, -1, dtype=np.int64)
            element[vertices] = where
            pairs = element[mesh_edges(mesh.faces)]
            parts.append(pairs[np.all(pairs >= 0, axis=1)])
        voxels = np.flatnonzero(~self.is_vertex)
        if voxels.size:
            ijk = self.brain_models.voxel[voxels]
            index = np.full(np.asarray(self.brain_models.volume_shape) + 1, -1, dtype=np.int64)
            index[tuple(ijk.T)] = voxels
            for step in np.eye(3, dtype=np.int64):
                ahead = index[tuple((ijk + step).T)]
                parts.append(np.column_stack([voxels, ahead])[ahead >= 0])
        if not parts:
            return np.zeros((0, 2), dtype=np.int64)
        return np.sort(np.concatenate(parts), axis=1)

    def vertex_areas(self):
        """Per element, its vertex area in mm^2 on its surface; 0 for voxels."""
        areas = np.zeros(self.n_elements)
        for hemi, where, vertices in self._cortex():
            areas[where] = vertex_areas(self._mesh(hemi))[vertices]
        return areas

    def coordinates(self):
        """Per element, its position in mm: on its surface (vertices), by the affine
        (voxels); (n_elements, 3)."""
        xyz = np.zeros((self.n_elements, 3))
        for hemi, where, vertices in self._cortex():
            xyz[where] = self._mesh(hemi).coordinates[vertices]
        voxels = ~self.is_vertex
        if voxels.any():
            xyz[voxels] = nib.affines.apply_affine(self.brain_models.affine,
                                                   self.brain_models.voxel[voxels])
        return xyz

    def describe(self):
        """What the outputs' sidecars say about the domain."""
        names, counts = np.unique(self.structures, return_counts=True)
        counts = {str(name): int(count) for name, count in zip(names, counts)}
        return {"Domain": "cifti", "Grayordinates": self.n_elements, "Structures": counts,
                "Surfaces": {h: mesh.source for h, mesh in self.meshes.items()}}


def _describe(brain_models):
    """A brain-model layout in a few words: its size and structures."""
    names = [str(name).replace("CIFTI_STRUCTURE_", "")
             for name, _, _ in brain_models.iter_structures()]
    return f"{len(brain_models)} grayordinates: {', '.join(names)}"


def cifti_domain(paths, meshes=None):
    """The domain of a list of CIFTI maps, checked before anything runs (every map read).

    Parameters
    ----------
    paths : list of paths
    meshes : dict {"left": Mesh, "right": Mesh} or None

    Returns
    -------
    CiftiDomain
    """
    _, brain_models = read_cifti_map(paths[0])
    domain = CiftiDomain(brain_models, meshes, source=str(paths[0]))
    for path in paths[1:]:
        domain.read(path)
    return domain
