"""Inputs tables from a BIDS derivatives dataset of first-level maps (pybids).

First-level results laid out as FitLins or nilearn's ``save_glm_to_bids`` write
them, e.g. ``sub-01/[ses-1/]func/sub-01_[ses-1_]task-loc_[space-X_]contrast-faces_
stat-effect_statmap.nii.gz`` and its ``stat-variance`` twin, are found by their
entities (pybids parses the names), and become the inputs table of
:mod:`nipype_secondlevel.design.tables`: one row per effect map, with ``subject``
(``sub-01``), ``condition``, ``path``, ``variance_path`` when asked, and the
columns of ``participants.tsv`` (``group``, ages, scores...).
"""

from pathlib import Path

import pandas as pd

from ..io.derivatives import bids_layout
from ..io.errors import bad_input
from ..spec import DEFAULTS

#: Entities that never tell two maps of one subject apart as conditions.
_NOT_CONDITIONS = ("subject", "stat", "suffix", "extension", "datatype", "hemi")
#: Entities that give the condition by themselves, the first that differs between a
#: subject's maps: the filters left several contrasts, or one contrast of several
#: sessions. Any other difference (space, desc, res, run, task...) is two maps for one
#: condition, an error naming the entity to filter on (or --condition-entity).
_CONDITION_ENTITIES = ("contrast", "session")
#: Column names of the inputs table that participants.tsv may not use.
_TABLE_COLUMNS = ("subject", "condition", "path", "variance_path")
#: Volumes, GIFTI hemisphere maps (a pair, hemi-L and hemi-R: one row, its hemi-L file)
#: and CIFTI dense scalars.
_MAP_EXTENSIONS = [".nii.gz", ".nii", ".func.gii", ".shape.gii", ".dscalar.nii"]


def _describe(values):
    return ", ".join(sorted({str(v) for v in values}))


def _available(layout):
    """'contrast faces, houses; session 1, 2; ...' over every statmap of the layout."""
    frame = _entity_frame(layout.get(suffix="statmap", extension=_MAP_EXTENSIONS))
    if frame.empty:
        return "no *_statmap.nii[.gz], .func.gii or .dscalar.nii file"
    parts = []
    for entity in frame.columns:
        values = sorted(set(frame[entity].dropna()))
        if entity in ("path", "suffix", "extension") or not values:
            continue
        shown = ", ".join(values[:8]) + (f", ... ({len(values)} values)"
                                         if len(values) > 8 else "")
        parts.append(f"{entity} {shown}")
    return "; ".join(parts)


def _entity_frame(files):
    """One row per file: its entities (as text; subject as ``sub-<label>``) and its path."""
    rows = []
    for bids_file in files:
        entities = {k: str(v) for k, v in bids_file.get_entities().items()}
        if "subject" in entities:
            entities["subject"] = f"sub-{entities['subject']}"
        rows.append({**entities, "path": str(Path(bids_file.path).absolute())})
    return pd.DataFrame(rows)


def _statmaps(layout, filters, stat, where):
    from bids.layout import Query

    try:
        files = layout.get(suffix="statmap", stat=stat, extension=_MAP_EXTENSIONS,
                           subject=Query.ANY, **filters)
    except ValueError as err:  # an entity pybids does not know
        known = sorted(layout.get_entities(metadata=False))
        raise bad_input(where, f"{err.args[0].split('.')[0]}; entities: "
                        f"{', '.join(known)}") from err
    frame = _entity_frame(files)
    if "hemi" in frame.columns:  # a GIFTI pair is one map: the plan finds the hemi-R twin
        frame = frame[frame["hemi"] != "R"].reset_index(drop=True)
    return frame


def _filters_text(filters):
    if not filters:
        return "no filter"
    return ", ".join(f"{k}={'|'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                     for k, v in filters.items())


def _condition_labels(values, entity):
    """Entity values as condition labels; a label must start with a letter to be usable
    in contrast expressions, so ``session`` ``1`` becomes ``session1``."""
    return [v if v[:1].isalpha() else f"{entity}{v}" for v in values]


def _condition_entity(effects, condition_entity, where):
    entities = [c for c in effects.columns if c not in (*_NOT_CONDITIONS, "path")]
    if condition_entity != "auto":
        if condition_entity not in entities:
            raise bad_input(where, f"condition entity {condition_entity!r} is not in the "
                            f"maps' names (entities: {', '.join(entities)})")
        return condition_entity
    counts = effects.fillna("").groupby("subject")[entities].nunique()
    for entity in _CONDITION_ENTITIES:
        if entity in entities and counts[entity].max() > 1:
            return entity
    return "contrast" if "contrast" in entities else None  # other differences: duplicates


def _check_one_map_each(effects, where):
    keys = ["subject", "condition"] if "condition" in effects.columns else ["subject"]
    twice = effects[effects.duplicated(keys, keep=False)]
    if twice.empty:
        return
    first = twice.iloc[0]
    same = twice
    for key in keys:
        same = same[same[key] == first[key]]
    differ = [c for c in same.columns if c not in ("path", *keys)
              and same[c].fillna("").nunique() > 1]
    of = f"subject {first['subject']}" + (
        f", condition {first['condition']}" if "condition" in keys else "")
    raise bad_input(where, f"{of} has {len(same)} maps "
                    f"({', '.join(Path(p).name for p in same['path'])}); they differ in "
                    + "; ".join(f"{c} ({_describe(same[c].dropna())})" for c in differ)
                    + ": filter on " + ("it" if len(differ) == 1 else "them"))


def _with_variances(effects, variances, where):
    keys = [c for c in effects.columns if c not in ("path", "stat", "extension", "condition")]
    if variances.empty:
        raise bad_input(where, "no stat-variance statmap matches the filters (needed for "
                        "mixed or fixed effects)")
    variances = variances.reindex(columns=[*keys, "path"]).fillna("")
    variances = variances.rename(columns={"path": "variance_path"})
    merged = effects.fillna("").merge(variances, on=keys, how="left", indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    if not missing.empty:
        name = Path(missing.iloc[0]["path"]).name
        raise bad_input(where, f"no stat-variance map beside {name} ({len(missing)} effect "
                        "map(s) without one)")
    twice = merged[merged.duplicated("path", keep=False)]
    if not twice.empty:
        raise bad_input(where, f"{Path(twice.iloc[0]['path']).name} has "
                        f"{len(twice[twice['path'] == twice.iloc[0]['path']])} variance maps")
    return merged.drop(columns="_merge")


def _effect_maps(layout, filters, where):
    """The subjects' stat-effect statmaps matching ``filters`` (one entity frame; refused
    when none does), and the filters as text values."""
    filters = {k: ([str(x) for x in v] if isinstance(v, (list, tuple)) else str(v))
               for k, v in (filters or {}).items() if v not in (None, [], ())}
    effects = _statmaps(layout, filters, "effect", where)
    if effects.empty:
        raise bad_input(where, f"no stat-effect statmap matches {_filters_text(filters)}; "
                        f"found: {_available(layout)}")
    return effects, filters


def find_statmaps(bids_dir, filters=None, *, variances=False):
    """Every subject's ``stat-effect`` statmap of a BIDS derivatives dataset matching
    ``filters``, with all its entities: the inputs of a BIDS Stats Model's node.

    Returns a DataFrame, one row per map: its entities (``subject`` as ``sub-<label>``,
    ``contrast``, ``session``, FitLins' ``node``...; ``""`` where a map has none),
    ``path`` and, with ``variances``, ``variance_path`` (the ``stat-variance`` map with
    the same entities); absolute paths. The one-line errors are those of
    :func:`bids_inputs_table` (no match, naming what the folder holds; a missing
    variance map).
    """
    where = f"BIDS derivatives folder {bids_dir}"
    layout = bids_layout(bids_dir)
    effects, filters = _effect_maps(layout, filters, where)
    if variances:
        return _with_variances(effects, _statmaps(layout, filters, "variance", where), where)
    return effects.fillna("")


def _participants(layout, raw_dir, group_column, where):
    """participants.tsv (the raw dataset's when ``raw_dir`` is given) indexed by subject."""
    from ..io.tables import read_table

    source = bids_layout(raw_dir, derivative=False) if raw_dir is not None else layout
    found = source.get(suffix="participants", extension=".tsv", return_type="filename")
    if not found:
        if raw_dir is not None:
            raise bad_input(f"BIDS folder {raw_dir}", "has no participants.tsv")
        if group_column != "group":
            raise bad_input(where, f"group column {group_column!r} asked for but there is "
                            "no participants.tsv")
        return None, None
    path = found[0]
    table = read_table(path, "participants.tsv")
    what = f"participants.tsv {path}"
    if "participant_id" not in table.columns:
        raise bad_input(what, "has no participant_id column")
    if group_column != "group":
        if group_column not in table.columns:
            raise bad_input(what, f"has no column {group_column!r} (group column); it has "
                            f"{', '.join(map(str, table.columns))}")
        table = table.drop(columns="group", errors="ignore")
        table = table.rename(columns={group_column: "group"})
    clash = [c for c in table.columns if c in _TABLE_COLUMNS]
    if clash:
        raise bad_input(what, f"has a column named {clash[0]!r}, a column of the inputs table")
    table["participant_id"] = table["participant_id"].astype(str)
    if table["participant_id"].duplicated().any():
        twice = table.loc[table["participant_id"].duplicated(), "participant_id"].iloc[0]
        raise bad_input(what, f"lists {twice} twice")
    if "group" in table.columns:
        table["group"] = table["group"].astype("string")
    return table.set_index("participant_id"), what


def bids_inputs_table(bids_dir, filters=None, *, variances=False, raw_dir=None,
                      condition_entity=DEFAULTS["condition_entity"],
                      group_column=DEFAULTS["group_column"]):
    """The inputs table of the effect maps of a BIDS derivatives dataset.

    Parameters
    ----------
    bids_dir : path
        BIDS derivatives dataset of first-level results (``*_stat-effect_statmap``).
    filters : dict or None
        Entity filters, ``{"task": "loc", "contrast": ["faces", "houses"],
        "space": "MNI152NLin2009cAsym", "session": "1", "desc": ...}``; a value
        may be a list of accepted values. Any pybids entity may be used.
    variances : bool
        Add ``variance_path``: the ``stat-variance`` map with the same entities.
    raw_dir : path or None
        The raw BIDS dataset whose ``participants.tsv`` to use; by default the
        derivatives dataset's own ``participants.tsv``, if it has one.
    condition_entity : str
        Entity giving the ``condition`` column. ``"auto"``: ``contrast`` when
        the filters leave several contrasts, else ``session`` when they leave
        one contrast of several sessions, else ``contrast``. Two maps of one
        subject and condition (differing in space, desc, res, run...) are then
        an error naming the entity to filter on.
    group_column : str
        Column of ``participants.tsv`` to use as ``group``.

    Returns
    -------
    pandas.DataFrame
        ``subject`` (``sub-<label>``), ``condition``, ``path``, ``variance_path``
        (with ``variances``), then every column of ``participants.tsv`` but
        ``participant_id``; absolute paths; sorted by subject and condition.

    Raises a one-line :class:`~nipype_secondlevel.io.errors.InputError` when the
    filters match no map (listing the entities found), when a subject has two
    maps for one condition (naming the entities they differ in), when a map has
    no variance map, or when a subject is missing from ``participants.tsv``.
    """
    where = f"BIDS derivatives folder {bids_dir}"
    layout = bids_layout(bids_dir)
    effects, filters = _effect_maps(layout, filters, where)
    entity = _condition_entity(effects, condition_entity, where)
    if entity is not None:
        effects["condition"] = _condition_labels(effects[entity].fillna(""), entity)
    _check_one_map_each(effects, where)
    if variances:
        effects = _with_variances(effects, _statmaps(layout, filters, "variance", where),
                                  where)
    columns = [c for c in ("subject", "condition", "path", "variance_path")
               if c in effects.columns]
    table = effects[columns].copy()
    participants, what = _participants(layout, raw_dir, group_column, where)
    if participants is not None:
        missing = sorted(set(table["subject"]) - set(participants.index))
        if missing:
            raise bad_input(what, f"has no row for {', '.join(missing)}")
        extra = participants.loc[table["subject"]].reset_index(drop=True)
        ordered = [c for c in ("group",) if c in extra.columns]
        ordered += [c for c in extra.columns if c not in ordered]
        table = pd.concat([table.reset_index(drop=True), extra[ordered]], axis=1)
        table = table[[c for c in ("subject", "condition", "group", "path", "variance_path")
                       if c in table.columns]
                      + [c for c in table.columns if c not in _TABLE_COLUMNS + ("group",)]]
    return table.sort_values([c for c in ("subject", "condition") if c in table.columns],
                             kind="stable").reset_index(drop=True)
