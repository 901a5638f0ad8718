"""The surface domain: maps on the cortical mesh as GIFTI pairs, one file per hemisphere.

A subject's map is two files, ``hemi-L`` and ``hemi-R`` (``.func.gii`` or ``.shape.gii``,
one data array each); the domain reads it as one 1-D array over both hemispheres'
vertices (left then right, medial wall included) and writes such arrays back as GIFTI
pairs. It decides what differs from the volume grid and nothing else: which elements
can be analysed (the medial wall is not), which are neighbours (edges of the mesh), what
each element measures (vertex areas) and where it is (coordinates on the mesh).
"""

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import bad_input
from .files import atomic_path
from .meshes import (
    FSAVERAGE5,
    FSAVERAGE5_VERTICES,
    HEMISPHERES,
    fsaverage5_medial_wall,
    fsaverage5_mesh,
    medial_wall_source,
    mesh_edges,
    vertex_areas,
)

#: BIDS ``hemi-`` labels and GIFTI's ``AnatomicalStructurePrimary`` of each hemisphere.
HEMI_LABELS = {"left": "L", "right": "R"}
GIFTI_STRUCTURES = {"left": "CortexLeft", "right": "CortexRight"}
#: Extensions of GIFTI maps.
GIFTI_MAP_SUFFIXES = (".func.gii", ".shape.gii")


def read_gifti_map(path, what="input map"):
    """The one map of a GIFTI file as a 1-D float64 array.

    Refused in one line naming the file: missing, unreadable, or holding no data
    array or several (a time series, or several maps: give one map per file).
    """
    path = Path(path)
    if not path.exists():
        raise bad_input(f"{what} {path}", "file not found")
    try:
        arrays = nib.load(path).darrays
        data = [np.asarray(array.data) for array in arrays]
    except Exception as err:  # nibabel raises many types for bad files
        raise bad_input(f"{what} {path}", f"not a readable GIFTI map ({err})") from err
    if len(data) != 1 or data[0].ndim != 1 and not (data[0].ndim == 2 and 1 in data[0].shape):
        n_maps = len(data) if len(data) != 1 else data[0].shape[-1]
        raise bad_input(f"{what} {path}", f"holds {n_maps} maps where one is expected; give "
                        "one map per file and hemisphere")
    return data[0].astype(float).ravel()


def hemisphere_pair(path):
    """The ``(left, right)`` files of a map given by either one (BIDS ``hemi-L``/``hemi-R``).

    Refused in one line when the name has no ``hemi-`` entity or the other file is missing.
    """
    path = Path(path)
    found = re.search(r"(^|_)hemi-([LR])(_|\.)", path.name)
    if found is None:
        raise bad_input(f"input map {path}", "a GIFTI map's name must say its hemisphere "
                        "(hemi-L or hemi-R, as fMRIPrep writes them)")
    start, end = found.span(2)
    pair = {label: path.with_name(path.name[:start] + label + path.name[end:])
            for label in ("L", "R")}
    for label, twin in pair.items():
        if not twin.exists():
            raise bad_input(f"input map {path}", f"its hemi-{label} twin {twin} is missing")
    return pair["L"], pair["R"]


def space_of(path):
    """The ``space-`` (with ``den-``) entity of a BIDS file name, e.g. "fsLR_den-32k"; None."""
    name = Path(path).name
    space = re.search(r"(^|_)space-([a-zA-Z0-9]+)", name)
    density = re.search(r"(^|_)den-([a-zA-Z0-9]+)", name)
    if space is None:
        return None
    return space.group(2) + (f"_den-{density.group(2)}" if density else "")


def element_mask(support, present, required):
    """The analysis mask of a domain: its support, where enough maps have a value.

    Parameters
    ----------
    support : array of bool (n_elements,)
        Elements that can be analysed (the medial wall excluded).
    present : array of int (n_elements,)
        Per element, the number of maps with a value there
        (:func:`~nipype_secondlevel.stats.missing.missing_values`).
    required : int
        How many maps an element needs (``--min-subjects``, ``--min-coverage``).

    Returns
    -------
    ndarray of bool (n_elements,)
    """
    return np.asarray(support, bool) & (np.asarray(present) >= int(required))


class SurfaceDomain:
    """Both hemispheres' vertices of one mesh, the elements of a GIFTI analysis.

    Elements are the left hemisphere's vertices then the right's (``n_elements =
    n_left + n_right``); a subject's map is one such array, read from a GIFTI pair.

    Parameters
    ----------
    meshes : dict {"left": Mesh, "right": Mesh}
        The surfaces on which adjacency, vertex areas and coordinates are taken
        (e.g. midthickness).
    space : str or None
        Template name ("fsaverage5", "fsaverage6", "fsLR_den-32k"...), written in
        the outputs' sidecars.
    medial_wall : dict {"left": bool array, "right": bool array} or None
        Vertices outside the analysis (None: none).
    pictures : dict {"left": Mesh, "right": Mesh} or None
        Surfaces to draw results on (e.g. inflated); default ``meshes``.
    """

    def __init__(self, meshes, space=None, medial_wall=None, pictures=None):
        self.meshes = {hemi: meshes[hemi] for hemi in HEMISPHERES}
        self.space = space
        self.sizes = {hemi: mesh.n_vertices for hemi, mesh in self.meshes.items()}
        self.medial_wall = medial_wall
        self.pictures = pictures or self.meshes

    @classmethod
    def fsaverage5(cls):
        """fsaverage5 from nilearn's files: midthickness for geometry, inflated for
        pictures, the packaged medial wall."""
        return cls({hemi: fsaverage5_mesh(hemi) for hemi in HEMISPHERES}, FSAVERAGE5,
                   {hemi: fsaverage5_medial_wall(hemi) for hemi in HEMISPHERES},
                   {hemi: fsaverage5_mesh(hemi, "inflated") for hemi in HEMISPHERES})

    @property
    def n_elements(self):
        """Number of vertices of both hemispheres."""
        return sum(self.sizes.values())

    def _offsets(self):
        return {"left": 0, "right": self.sizes["left"]}

    @property
    def structures(self):
        """Per element, its hemisphere ("left" or "right")."""
        return np.repeat(np.array(HEMISPHERES), [self.sizes[h] for h in HEMISPHERES])

    @property
    def local_index(self):
        """Per element, its vertex index in its hemisphere's mesh."""
        return np.concatenate([np.arange(self.sizes[h]) for h in HEMISPHERES])

    @property
    def is_vertex(self):
        """Per element, True: every element is a vertex."""
        return np.ones(self.n_elements, dtype=bool)

    #: Volume of a voxel element in mm^3 (a surface has none).
    voxel_volume = 0.0

    def support(self):
        """Elements that can be analysed: every vertex off the medial wall."""
        if self.medial_wall is None:
            return np.ones(self.n_elements, dtype=bool)
        return ~np.concatenate([self.medial_wall[h] for h in HEMISPHERES])

    def read(self, pair, what="input map"):
        """A subject's map from its ``(left, right)`` GIFTI files, as (n_elements,) floats.

        Refused in one line naming the file: unreadable, several maps, or a vertex count
        other than the mesh's.
        """
        values = []
        for hemi, path in zip(HEMISPHERES, pair):
            data = read_gifti_map(path, what)
            if data.size != self.sizes[hemi]:
                raise bad_input(f"{what} {path}", f"has {data.size} vertices, the {hemi} "
                                f"hemisphere of {self.describe_mesh()} {self.sizes[hemi]}: "
                                "all maps must be on the same mesh")
            values.append(data)
        return np.concatenate(values)

    def write(self, values, folder, name, description=None):
        """Write a (n_elements,) map as ``hemi-L_<name>.func.gii`` and ``hemi-R_...``.

        Each file holds one float32 data array named ``description`` (or ``name``)
        and says its hemisphere (``AnatomicalStructurePrimary``). Returns the two paths.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (self.n_elements,):
            raise ValueError(f"values must be ({self.n_elements},), got {values.shape}")
        paths = []
        for hemi in HEMISPHERES:
            start = self._offsets()[hemi]
            array = nib.gifti.GiftiDataArray(
                values[start:start + self.sizes[hemi]], intent="NIFTI_INTENT_NONE",
                datatype="NIFTI_TYPE_FLOAT32",
                meta=nib.gifti.GiftiMetaData(Name=description or name))
            img = nib.GiftiImage(
                darrays=[array],
                meta=nib.gifti.GiftiMetaData(AnatomicalStructurePrimary=GIFTI_STRUCTURES[hemi]))
            path = Path(folder) / f"hemi-{HEMI_LABELS[hemi]}_{name}.func.gii"
            with atomic_path(path) as tmp:
                nib.save(img, tmp)
            paths.append(str(path.absolute()))
        return paths

    def surface_maps(self, values):
        """A (n_elements,) map as ``{hemisphere: (picture mesh, values at its vertices)}``."""
        offsets = self._offsets()
        return {h: (self.pictures[h], np.asarray(values)[offsets[h]:offsets[h] + self.sizes[h]])
                for h in HEMISPHERES}

    def edges(self):
        """Neighbouring elements: the edges of both meshes, (n_edges, 2) int64, i < j."""
        offsets = self._offsets()
        return np.concatenate([mesh_edges(self.meshes[h].faces) + offsets[h]
                               for h in HEMISPHERES])

    def vertex_areas(self):
        """Per element, its vertex area in mm^2 (:func:`~.meshes.vertex_areas`)."""
        return np.concatenate([vertex_areas(self.meshes[h]) for h in HEMISPHERES])

    def coordinates(self):
        """Per element, its position on the mesh in mm, (n_elements, 3)."""
        return np.concatenate([self.meshes[h].coordinates for h in HEMISPHERES])

    def describe_mesh(self):
        """The mesh in words, for messages: "fsaverage5" or the surfaces' files."""
        return self.space or " and ".join(self.meshes[h].source for h in HEMISPHERES)

    def describe(self):
        """What the outputs' sidecars say about the domain."""
        out = {"Domain": "surface", "Space": self.space,
               "VerticesPerHemisphere": dict(self.sizes),
               "Surfaces": {h: self.meshes[h].source for h in HEMISPHERES}}
        if self.space == FSAVERAGE5 and self.medial_wall is not None:
            out["MedialWall"] = medial_wall_source()
        return out


def surface_domain(pairs, meshes=None):
    """The domain of a list of GIFTI pairs, checked before anything runs.

    Parameters
    ----------
    pairs : list of (left, right) paths
        Every subject's map.
    meshes : dict {"left": Mesh, "right": Mesh} or None
        The user's surfaces; None: fsaverage5 if the maps are on it.

    Returns
    -------
    SurfaceDomain

    Refused in one line naming the file: a left file that is not ``hemi-L`` (or right
    not ``hemi-R``), maps of several spaces, a vertex count other than the first map's
    or the mesh's, maps not on fsaverage5 without surfaces.
    """
    spaces = {}
    for left, right in pairs:
        for label, path in zip("LR", (left, right)):
            if f"hemi-{'R' if label == 'L' else 'L'}" in Path(path).name:
                raise bad_input(f"input map {path}", f"given as the hemi-{label} map of its "
                                "pair but named for the other hemisphere")
            spaces.setdefault(space_of(path), path)
    if len(spaces) > 1:
        described = ", ".join(f"{space or 'none'} ({path})" for space, path in spaces.items())
        raise bad_input("input maps", f"are in several spaces: {described}; give maps of "
                        "one space and density")
    space = next(iter(spaces), None)
    first = pairs[0]
    sizes = {h: read_gifti_map(p).size for h, p in zip(HEMISPHERES, first)}
    if meshes is None:
        if space not in (None, FSAVERAGE5) or set(sizes.values()) != {FSAVERAGE5_VERTICES}:
            raise bad_input(f"input map {first[0]}", f"has {sizes['left']} vertices (space "
                            f"{space or 'not given'}); only fsaverage5 ({FSAVERAGE5_VERTICES} "
                            "per hemisphere) has a mesh without network: give the surfaces "
                            "of its space (--surface-left/--surface-right, GIFTI .surf.gii)")
        domain = SurfaceDomain.fsaverage5()
    else:
        for hemi in HEMISPHERES:
            if meshes[hemi].n_vertices != sizes[hemi]:
                raise bad_input(f"surface {meshes[hemi].source}", f"has "
                                f"{meshes[hemi].n_vertices} vertices, the {hemi} maps "
                                f"{sizes[hemi]} ({first[HEMISPHERES.index(hemi)]}): give the "
                                "surfaces of the maps' space")
        wall = (None if space != FSAVERAGE5 or set(sizes.values()) != {FSAVERAGE5_VERTICES}
                else {hemi: fsaverage5_medial_wall(hemi) for hemi in HEMISPHERES})
        domain = SurfaceDomain(meshes, space, wall)
    for pair in pairs[1:]:
        domain.read(pair)
    return domain
