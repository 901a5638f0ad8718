"""The data domain of an analysis, decided once from its maps, and its bridge to the grid.

A plan's domain (``spec.DOMAINS``) is ``volume`` (NIfTI maps), ``surface`` (GIFTI
hemisphere pairs, the table naming either file of a pair) or ``cifti`` (CIFTI-2 dense
scalar maps). Nodes receive the domain as a small JSON value (:func:`domain_value`) and
rebuild it with :func:`load_domain`.

Between the read and the write ends a surface or CIFTI analysis uses the volume's
nodes unchanged: a map over the domain's ``n`` elements travels as an ``(n, 1, 1)``
NIfTI image of identity affine (:func:`as_grid_image`), so the masked data, the
estimate, the contrasts, the FDR/Bonferroni thresholds and the permutation tests are
the volume's; what is spatial (the neighbour graph, clusters, pictures) comes from
the domain.
"""

from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np

from .cifti import CIFTI_MAP_SUFFIXES, cifti_domain
from .errors import bad_input
from .meshes import HEMISPHERES, load_surface
from .surfaces import GIFTI_MAP_SUFFIXES, hemisphere_pair, surface_domain

#: File endings of each domain's maps (anything else is a volume).
DOMAIN_SUFFIXES = {"surface": GIFTI_MAP_SUFFIXES, "cifti": CIFTI_MAP_SUFFIXES}


def domain_of(path):
    """The domain of one map by its name: "surface", "cifti" or "volume"."""
    name = Path(path).name
    return next((domain for domain, suffixes in DOMAIN_SUFFIXES.items()
                 if name.endswith(suffixes)), "volume")


def plan_domain(paths):
    """The one domain of a list of maps; refused in one line when they mix domains."""
    found = {}
    for path in paths:
        found.setdefault(domain_of(path), path)
    if len(found) > 1:
        described = ", ".join(f"{domain} ({path})" for domain, path in found.items())
        raise bad_input("input maps", f"mix data domains: {described}; give maps of one "
                        "kind (NIfTI volumes, GIFTI hemisphere pairs or CIFTI dscalar)")
    return next(iter(found), "volume")


def map_files(domain, paths):
    """Every file of the maps ``paths``: both files of each GIFTI pair on a surface."""
    if domain != "surface":
        return list(paths)
    return [str(f) for path in paths for f in hemisphere_pair(path)]


def domain_value(domain, first_map, surfaces):
    """The domain as a JSON value given to nodes: its kind, a map that sets its layout,
    the user's surfaces ({hemisphere: path or None})."""
    return {"domain": domain, "first_map": str(first_map),
            "surfaces": {h: None if surfaces.get(h) is None else str(surfaces[h])
                         for h in HEMISPHERES}}


def user_meshes(surfaces):
    """The user's surfaces as meshes ({hemisphere: Mesh}), or None when none is given;
    refused in one line when only one hemisphere's is."""
    given = {h: p for h, p in surfaces.items() if p is not None}
    if not given:
        return None
    if len(given) != 2:
        missing = next(h for h in HEMISPHERES if h not in given)
        raise bad_input(f"--surface-{next(iter(given))} {next(iter(given.values()))}",
                        f"is given without --surface-{missing}: give both hemispheres' "
                        "surfaces")
    return {h: load_surface(p, f"--surface-{h}") for h, p in given.items()}


def check_domain(domain, paths, surfaces, variance_paths=()):
    """The domain of the maps, every map (and variance map) read and checked, before the
    run; one line naming the file for a wrong vertex count, mixed spaces, another CIFTI
    layout, a missing twin or surface."""
    meshes = user_meshes(surfaces)
    if domain == "surface":
        built = surface_domain([hemisphere_pair(p) for p in paths], meshes)
    else:
        built = cifti_domain(list(paths), meshes)
        built.edges()  # its cortex's clusters need the surfaces: refused now without them
    for path in variance_paths or ():
        read_map(built, path, "variance map")
    return built


@cache
def _load(domain, first_map, left, right):
    meshes = user_meshes({"left": left, "right": right})
    if domain == "surface":
        return surface_domain([hemisphere_pair(first_map)], meshes)
    return cifti_domain([first_map], meshes)


def load_domain(value):
    """The domain object (SurfaceDomain, CiftiDomain) of a :func:`domain_value`."""
    surfaces = value["surfaces"]
    return _load(value["domain"], value["first_map"], surfaces["left"], surfaces["right"])


def read_map(domain, path, what="input map"):
    """A map (either file of a GIFTI pair, or a CIFTI file) as (n_elements,) floats."""
    if hasattr(domain, "brain_models"):
        return domain.read(path, what)
    return domain.read(hemisphere_pair(path), what)


def as_grid_image(values):
    """(n_elements,) values as the (n, 1, 1) NIfTI image the volume's nodes read."""
    values = np.asarray(values, dtype=np.float32)
    return nib.Nifti1Image(values.reshape(-1, 1, 1), np.eye(4))


def from_grid_image(path):
    """The (n_elements,) values of a :func:`as_grid_image` file."""
    return np.asarray(nib.load(str(path)).dataobj, dtype=float).reshape(-1)


def domain_graph_edges(domain, mask):
    """The neighbour pairs among the elements of ``mask`` (bool, n_elements), as indices
    into the masked elements: (n_edges, 2) int64."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    index = np.cumsum(mask) - 1
    edges = domain.edges()
    return index[edges[mask[edges[:, 0]] & mask[edges[:, 1]]]]


#: Options of the volume grid, refused with surface or CIFTI maps.
VOLUME_ONLY = ("smoothing_fwhm", "mask", "reference_map")
#: Options of the volume grid that do not apply to surface or CIFTI maps (recorded None).
NOT_APPLICABLE = {"mask_strategy": None, "atlases": []}


def check_domain_options(values, domain, first_map):
    """Refuse in one line an option of the other domains: ``--surface-left/right`` or
    ``--surface-extent`` with volumes, a volume option (smoothing, mask, reference map)
    with surface or CIFTI maps."""
    from ..spec import option

    if domain == "volume":
        given = next((f"surface_{h}" for h in HEMISPHERES if values.get(f"surface_{h}")),
                     "surface_extent" if values.get("surface_extent") not in (None, "auto")
                     else None)
        if given:
            raise bad_input(f"{option(given, 'run').switch} {values[given]}",
                            f"is for GIFTI or CIFTI maps, and {first_map} is a NIfTI volume; "
                            "leave it out")
        return
    given = next((name for name in VOLUME_ONLY if values.get(name) is not None), None)
    if given:
        raise bad_input(f"{option(given, 'run').switch} {values[given]}",
                        f"applies to NIfTI volumes, and the maps are {domain} maps "
                        f"({first_map}); leave it out")


def surface_extent(value, domain):
    """``--surface-extent`` on a surface or CIFTI domain: "area" or "vertices" (None when
    it does not apply); auto is area unless the domain holds voxels. Area is refused in
    one line for CIFTI maps with voxels: a voxel has a volume, not an area."""
    has_voxels = not np.all(domain.is_vertex)
    if value == "auto":
        return "vertices" if has_voxels else "area"
    if value == "area" and has_voxels:
        raise bad_input("--surface-extent area", f"sums vertex areas (mm2), and the CIFTI "
                        f"maps ({domain.source}) hold voxels too: give --surface-extent "
                        "vertices")
    return value


def extent_weights(value, mask):
    """The per-element extents of the elements of ``mask`` for a domain value carrying
    an ``extent`` (:func:`~..workflows.surfaces.permutation_domain_value`): their vertex areas
    in mm^2 for "area", else None (clusters measured by their number of elements)."""
    if value.get("extent") != "area":
        return None
    return load_domain(value).vertex_areas()[np.asarray(mask, dtype=bool).reshape(-1)]
