"""BIDS Stats Models (BSM 1.0): reading a model file, checking it, choosing its node.

A model file is JSON (``model-<name>_smdl.json``) whose ``Nodes`` describe a
hierarchy of analyses; this package runs the group level, a ``Dataset`` node, on
first-level maps that another tool (FitLins, nilearn) wrote. The file is checked
against the standard's own schema, ``bsmschema`` (the bids-standard pydantic models,
from PyPI, offline), and then for what the schema cannot say: unknown keys (bsmschema
0.1.1 means to forbid them, but its ``"extras"`` setting is read by pydantic as no
setting), node names that are unique and edges between them, transformations pybids
implements, the node's level and the options of its ``Model.Software`` block.

Every problem is one line naming the file and the JSON path of the value, e.g.
``model.json: Nodes[1].Contrasts[0].ConditionList: ...``.
"""

import json
import typing
from pathlib import Path

from ..io.errors import bad_input

#: Key of this package's block in ``Model.Software``.
SOFTWARE = "nipype-secondlevel"
#: Node levels this package runs: the group level.
RUNNABLE_LEVELS = ("Dataset",)


def json_path(loc):
    """``("Nodes", 1, "Contrasts", 0)`` as ``"Nodes[1].Contrasts[0]"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


def _schema_error(err, data):
    """The first pydantic error as (JSON path, problem). Union types add the names of
    their branches to the error's location; only the parts found in ``data`` are kept,
    and the name of a missing key."""
    first = err.errors()[0]
    loc, value = [], data
    for part in first["loc"]:
        if isinstance(value, dict) and part in value or isinstance(value, list) \
                and isinstance(part, int) and 0 <= part < len(value):
            loc.append(part)
            value = value[part]
    if first["type"] == "missing":
        loc.append(first["loc"][-1])
    return json_path(loc), first["msg"]


def _schema_classes(annotation):
    """The pydantic model classes an annotation names (through Optional, list, Union)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [c for arg in typing.get_args(annotation) for c in _schema_classes(arg)]


def _unknown_key(value, schema, loc=()):
    """(path, key, known keys) of the first key of ``value`` that ``schema`` (a bsmschema
    class) does not define, or None."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _unknown_key(item, schema, (*loc, i))
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return None
    fields = schema.model_fields
    for key, item in value.items():
        if key not in fields:
            return json_path(loc), key, sorted(fields)
        for inner in _schema_classes(fields[key].annotation):
            found = _unknown_key(item, inner, (*loc, key))
            if found:
                return found
    return None


def _check_graph(model, where):
    """Unique node names, edges between existing nodes, transformations pybids has."""
    from bids.modeling import transformations

    names = [node["Name"] for node in model["Nodes"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise bad_input(where, f"Nodes[{i}].Name: {name!r} names two nodes; node names "
                            "must be unique")
    for i, edge in enumerate(model.get("Edges") or []):
        for end in ("Source", "Destination"):
            if edge[end] not in names:
                raise bad_input(where, f"Edges[{i}].{end}: no node is named {edge[end]!r} "
                                f"(nodes: {', '.join(names)})")
    known = sorted(n for n in transformations.__all__ if n[0].isupper() and "_" not in n
                   and n != "TransformerManager")
    for i, node in enumerate(model["Nodes"]):
        instructions = (node.get("Transformations") or {}).get("Instructions", [])
        for k, instruction in enumerate(instructions):
            name = instruction.get("Name") if isinstance(instruction, dict) else None
            if name not in known:
                raise bad_input(where, f"Nodes[{i}].Transformations.Instructions[{k}].Name: "
                                f"{name!r} is not a transformation of pybids (known: "
                                f"{', '.join(known)})")


def read_model(path):
    """Read and check a BIDS Stats Model file.

    Parameters
    ----------
    path : path
        The model's JSON file.

    Returns
    -------
    dict
        The model as written (CamelCase keys, as BSM 1.0 and pybids read them).

    Raises a one-line :class:`~nipype_secondlevel.io.errors.InputError`
    (``<path>: <JSON path>: <problem>``) for a file that is missing or not JSON, a
    schema error (bsmschema), an unknown key, two nodes of one name, an edge to no
    node, or a transformation pybids does not implement.
    """
    from bsmschema.models import BIDSStatsModel
    from pydantic import ValidationError

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise bad_input(where, f"cannot be read ({err.strerror or err})") from err
    try:
        model = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad_input(where, f"not valid JSON (line {err.lineno}, column {err.colno}: "
                        f"{err.msg})") from err
    if not isinstance(model, dict):
        raise bad_input(where, "not a BIDS Stats Model (a JSON object with Name, "
                        "BIDSModelVersion and Nodes)")
    try:
        BIDSStatsModel.model_validate(model)
    except ValidationError as err:
        loc, problem = _schema_error(err, model)
        raise bad_input(where, f"{loc or 'the model'}: {problem}") from err
    unknown = _unknown_key(model, BIDSStatsModel)
    if unknown:
        loc, key, known = unknown
        raise bad_input(where, f"{json_path((loc, key)) if loc else key}: unknown key "
                        f"(known here: {', '.join(known)})")
    _check_graph(model, where)
    return model


def select_node(model, name, where):
    """(index, node) of the node to run: the one named ``name``, or without a name the
    model's one ``Dataset`` node. Refused: a name no node has, several dataset nodes
    and no name, or a node at a level this package does not run."""
    nodes = model["Nodes"]
    names = [node["Name"] for node in nodes]
    if name is not None:
        if name not in names:
            raise bad_input(where, f"Nodes: no node is named {name!r} (nodes: "
                            f"{', '.join(names)})")
        index = names.index(name)
    else:
        group = [i for i, node in enumerate(nodes) if node["Level"] in RUNNABLE_LEVELS]
        if len(group) != 1:
            raise bad_input(where, f"Nodes: {len(group)} dataset-level nodes "
                            + (f"({', '.join(names[i] for i in group)}): name the one to run"
                               if group else "(the group level this package runs)"))
        index = group[0]
    level = nodes[index]["Level"]
    if level not in RUNNABLE_LEVELS:
        raise bad_input(where, f"Nodes[{index}].Level: {level!r}: nipype-secondlevel runs "
                        "the group level (Level \"Dataset\"); run the lower levels with a "
                        "first-level tool such as FitLins")
    return index, nodes[index]


def source_node(model, index, where):
    """(name, filter) of the node whose outputs node ``index`` takes: its incoming edge,
    or without ``Edges`` the node before it; (None, {}) for a node with no source."""
    name = model["Nodes"][index]["Name"]
    edges = model.get("Edges")
    if edges is None:
        return (model["Nodes"][index - 1]["Name"], {}) if index else (None, {})
    incoming = [i for i, edge in enumerate(edges) if edge["Destination"] == name]
    if len(incoming) > 1:
        raise bad_input(where, f"Edges[{incoming[1]}]: node {name!r} has {len(incoming)} "
                        "incoming edges; nipype-secondlevel takes the inputs of one")
    if not incoming:
        return None, {}
    edge = edges[incoming[0]]
    return edge["Source"], dict(edge.get("Filter") or {})


def software_options(node, index, options, where):
    """The node's ``Model.Software["nipype-secondlevel"]`` block, each value checked.

    ``options`` maps every option name a model may set (the command line's names, with
    underscores: ``estimation``, ``correction``, ``n_perm``...) to a function that
    returns the value checked or raises ``ValueError`` with the problem. An unknown
    name or a refused value is one line naming its JSON path.
    """
    block = ((node["Model"].get("Software") or {}).get(SOFTWARE)) or {}
    at = f"Nodes[{index}].Model.Software.{SOFTWARE}"
    checked = {}
    for key, value in block.items():
        if key not in options:
            raise bad_input(where, f"{at}.{key}: unknown option (known: "
                            f"{', '.join(sorted(options))})")
        try:
            checked[key] = options[key](value)
        except (TypeError, ValueError) as err:
            raise bad_input(where, f"{at}.{key}: {err}") from err
    return checked
