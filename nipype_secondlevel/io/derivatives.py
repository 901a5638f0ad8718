"""BIDS derivatives datasets: indexing one with pybids, describing ours.

First-level tools (FitLins, nilearn's ``save_glm_to_bids``) and this package name
statistical maps with the ``contrast`` and ``stat`` entities of BIDS Stats Models
(``sub-01_task-loc_contrast-faces_stat-effect_statmap.nii.gz``); FitLins puts each
model node's maps in a folder ``node-<name>/``. pybids' own configurations do not know
these entities, so every layout here is built with :data:`STATMAP_CONFIG` added, as
FitLins does with its own configuration; the package ships it
(``nipype_secondlevel/data/pybids_statmaps.json``) for users' own layouts:
``BIDSLayout(folder, config=["bids", "derivatives", STATMAP_CONFIG], is_derivative=True)``.
"""

import warnings
from pathlib import Path

from .errors import bad_input
from .files import atomic_path, write_json
from .naming import BIDSIGNORE, DATASET_DESCRIPTION, bidsignore_patterns

#: pybids configuration of the statistical-map entities ``contrast``, ``stat`` and
#: ``node`` (patterns as in FitLins), a JSON file shipped with the package.
STATMAP_CONFIG = str(Path(__file__).resolve().parents[1] / "data" / "pybids_statmaps.json")

#: BIDS version our dataset_description.json declares.
BIDS_VERSION = "1.10.0"


def bids_layout(root, derivative=True):
    """A pybids ``BIDSLayout`` of ``root`` (not validated, JSON sidecars not indexed),
    knowing the ``contrast`` and ``stat`` entities.

    ``derivative``: index ``root`` as a derivatives dataset (``is_derivative``),
    else as a raw dataset. A folder that is missing or that pybids cannot index
    is a one-line :class:`~nipype_secondlevel.io.errors.InputError`.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    root = Path(root)
    what = f"BIDS {'derivatives ' if derivative else ''}folder {root}"
    if not root.is_dir():
        raise bad_input(what, "not found or not a folder")
    with warnings.catch_warnings():
        # pybids warns about a missing dataset_description.json; not validating is our choice.
        warnings.simplefilter("ignore")
        try:
            return BIDSLayout(root, validate=False, is_derivative=derivative,
                              config=["bids", "derivatives", STATMAP_CONFIG],
                              indexer=BIDSLayoutIndexer(index_metadata=False))
        except Exception as err:  # pybids raises several kinds of errors on bad folders
            raise bad_input(what, f"cannot be indexed by pybids ({err})") from err


def write_dataset_description(out_dir, command, name="nipype-secondlevel group analysis",
                              code_url=None):
    """Write ``dataset_description.json`` making ``out_dir`` a BIDS derivatives dataset.

    ``GeneratedBy`` names this package and its version, with ``command`` (the
    command line that made the results) as its ``Description``; ``code_url``
    is added as ``CodeURL`` when given. Written atomically; returns its path.
    """
    from .. import __version__

    generated_by = {"Name": "nipype-secondlevel", "Version": __version__,
                    "Description": str(command)}
    if code_url:
        generated_by["CodeURL"] = str(code_url)
    description = {
        "Name": str(name),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
    }
    return write_json(Path(out_dir) / DATASET_DESCRIPTION, description)


def write_bidsignore(out_dir):
    """Write ``.bidsignore`` (:func:`~.naming.bidsignore_patterns`), atomically; returns its
    path."""
    path = Path(out_dir) / BIDSIGNORE
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(bidsignore_patterns()) + "\n")
    return str(path.absolute())
