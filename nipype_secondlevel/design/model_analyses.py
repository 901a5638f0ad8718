"""The analyses of a BIDS Stats Model's group-level node, built by pybids.

Glue, as in FitLins: the first-level maps found in a derivatives folder become the
node's inputs (one pybids ``ContrastInfo`` per map), and pybids'
``BIDSStatsModelsGraph`` loads ``participants.tsv``, applies the node's
``Transformations``, splits the maps by ``GroupBy`` and builds each group's design
matrix (``Model.X``, ``Formula``) and contrasts (``Contrasts``, ``DummyContrasts``).
This module checks what pybids leaves unchecked or fills in silently (a column the
model names that nothing makes, a missing value, a map whose subject has no row in
``participants.tsv``, two maps of a subject the design cannot tell apart, contrast
weights that do not fit their conditions) and turns each group into an
:class:`Analysis`: the rows, the design, the contrast weights and the estimation.
"""

import fnmatch
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from ..io.errors import InputError, InputWarning, bad_input
from .bids import find_statmaps
from .contrasts import contrast_label, parse_contrast
from .stats_models import SOFTWARE, read_model, select_node, software_options, source_node

#: Entity of a node input carrying its row in the maps' frame through pybids.
_MAP = "nipype_secondlevel_map"
#: Entities of a map that name the file, not its first-level contrast.
_FILE_ENTITIES = ("stat", "suffix", "extension", "datatype", "node")
_NOT_INPUT_ENTITIES = ("path", "variance_path", *_FILE_ENTITIES)


@dataclass(frozen=True)
class ModelContrast:
    """One contrast of an analysis.

    ``name`` is pybids' (the model's name, prefixed by the first-level contrast when
    the group has one: ``faces_patientsVsControls``; a dummy contrast of ``1`` takes
    the first-level contrast's name), ``label`` its BIDS label for file names,
    ``weights`` a (q, n_columns) array over the design's columns, ``test`` ``"t"``,
    ``"F"`` or ``"pass"`` (effect and variance only).
    """

    name: str
    label: str
    weights: np.ndarray
    test: str


@dataclass(frozen=True)
class Analysis:
    """One ``GroupBy`` group of a model's node: a group analysis to run.

    Fields: ``node`` (the node's name), ``entities`` (the group's, e.g.
    ``{"contrast": "faces"}``), ``name`` (them as a BIDS label,
    ``contrast-faces``; the node's name for a node without GroupBy), ``rows`` (one
    per map, in the design's order: ``subject`` as ``sub-<label>``, the map's
    entities, ``path`` and, for mixed or fixed effects, ``variance_path``),
    ``design`` (the design matrix, pybids' column names), ``contrasts``
    (:class:`ModelContrast`), ``model_type`` (``"glm"`` or ``"meta"``),
    ``estimation`` (``"ols"``, ``"mixed"`` or ``"fixed"``) and ``options`` (the
    other options of the node's ``Model.Software["nipype-secondlevel"]`` block).
    """

    node: str
    entities: dict
    name: str
    rows: pd.DataFrame
    design: pd.DataFrame
    contrasts: tuple
    model_type: str
    estimation: str
    options: dict


def fitlins_label(text):
    """A name as FitLins writes it into file names (its ``to_alphanum``): characters
    other than letters and digits split words, joined in camelCase with each later word
    capitalised (``"subject_level"`` -> ``subjectLevel``, ``"a_vs_B"`` -> ``aVsB``)."""
    words = re.sub("[^a-zA-Z0-9]", "_", str(text)).split("_")
    return words[0] + "".join(word.title() for word in words[1:])


def _estimation(model_type, options, index, where, given=None):
    """``Type: "meta"`` is fixed effects unless the Software block asks for mixed;
    ``glm`` is OLS unless it says otherwise; ``given`` (the command line's) wins."""
    estimation = options.pop("estimation", "fixed" if model_type == "meta" else "ols")
    estimation = given or estimation
    if model_type == "meta" and estimation == "ols":
        why = ("a meta-analysis weights the maps by their first-level variances "
               "(estimation 'fixed' or 'mixed')")
        if given:
            raise bad_input("--estimation ols", f"node Nodes[{index}] of {where} has Type "
                            f"'meta': {why}")
        raise bad_input(where, f"Nodes[{index}].Model.Software.nipype-secondlevel.estimation: "
                        f"'ols' with Type 'meta': {why}")
    return estimation


def _warn_ignored(spec, index, where):
    """One warning line per field of the node's Model this package does not use."""
    model, at = spec["Model"], f"{where}: Nodes[{index}].Model"
    for key, what in (("HRF", "the convolution of a first-level model"),
                      ("Options", "filtering options of a first-level model")):
        if model.get(key):
            warnings.warn(f"{at}.{key}: ignored ({what}; this node is a group level)",
                          InputWarning, stacklevel=3)
    for key in model.get("Software") or {}:
        if key != SOFTWARE:
            warnings.warn(f"{at}.Software.{key}: ignored (options of another software; "
                          f"nipype-secondlevel reads the {SOFTWARE!r} block)", InputWarning,
                          stacklevel=3)


def _node_maps(bids_dir, model, index, source, edge_filter, variances):
    """The maps the node takes: the model's Input and the edge's Filter applied; in a
    FitLins layout, those of the source node's folder ``node-<name>``."""
    where = f"BIDS derivatives folder {bids_dir}"
    filters = {**(model.get("Input") or {}), **edge_filter}
    subjects = filters.pop("subject", None)
    if "contrast" in filters:
        filters["contrast"] = [fitlins_label(c) for c in np.atleast_1d(filters["contrast"])]
    maps = find_statmaps(bids_dir, filters, variances=variances)
    if subjects is not None:
        maps = maps[maps["subject"].isin([f"sub-{s}" for s in np.atleast_1d(subjects)])]
        if maps.empty:
            raise bad_input(where, "no stat-effect statmap of the model's Input subjects "
                            f"({', '.join(map(str, np.atleast_1d(subjects)))})")
    if "node" in maps.columns and (maps["node"] != "").any():
        found = sorted(set(maps["node"]) - {""})
        wanted = fitlins_label(source) if source else (found[0] if len(found) == 1 else None)
        if wanted not in found:
            name = model["Nodes"][index]["Name"]
            raise bad_input(where, f"node {name!r} takes the maps of "
                            + (f"node {source!r} (folder node-{wanted})" if source else
                               "the node before it, which the model does not have")
                            + f"; the folder holds those of nodes {', '.join(found)}")
        maps = maps[maps["node"] == wanted]
    if "contrast" not in maps.columns or (maps["contrast"] == "").any():
        raise bad_input(where, "a first-level map has no contrast entity "
                        "(contrast-<name>), which a model's node needs")
    return maps.reset_index(drop=True)


def _inputs(maps):
    """One pybids ContrastInfo per map: its first-level contrast and entities."""
    from bids.modeling.statsmodels import ContrastInfo

    inputs = []
    for i, row in maps.iterrows():
        entities = {k: v for k, v in row.items() if k not in _NOT_INPUT_ENTITIES and v != ""}
        entities["subject"] = entities["subject"].removeprefix("sub-")
        entities[_MAP] = i
        inputs.append(ContrastInfo(row["contrast"], [row["contrast"]], [1], "t", entities))
    return inputs


def _run_node(layout, model, name, inputs, index, where):
    """pybids' outputs of the node (one per GroupBy group), the columns and the subjects
    of the participants.tsv it read. Its silent fill-ins are off: missing X columns and
    contrasts naming no column are kept for the checks here, missing values left NaN."""
    from bids.modeling import BIDSStatsModelsGraph
    from formulaic.errors import FormulaicError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph = BIDSStatsModelsGraph(layout, model)
            graph.load_collections(nodes=[name])
            node = graph.get_node(name)
            outputs = node.run(inputs, group_by=node.group_by, invalid_inputs="drop",
                               invalid_contrasts="ignore", missing_values="ignore")
        except FormulaicError as err:  # (formulaic, pybids' formula parser)
            raise bad_input(where, f"Nodes[{index}].Model.Formula: {err}") from err
        except (ValueError, KeyError, TypeError, NotImplementedError) as err:
            raise bad_input(where, f"Nodes[{index}]: pybids cannot build the design: "
                            f"{err}") from err
    collections = node.get_collections()
    columns = sorted({v for c in collections for v in c.variables})
    subjects = {str(s) for c in collections for s in c.to_df().get("subject", [])}
    return outputs, columns, subjects


def _check_columns(spec, output, participant_columns, contrasts, index, where):
    """Every name of Model.X is a column pybids made (or, with wildcards, matches one)."""
    made = [str(c) for c in output.data.columns]
    for k, name in enumerate(spec["Model"]["X"]):
        name = "intercept" if name == 1 else name
        if name in made or fnmatch.filter(made, name):
            continue
        raise bad_input(where, f"Nodes[{index}].Model.X[{k}]: {name!r} is no column of "
                        f"participants.tsv ({', '.join(participant_columns) or 'none'}), "
                        "none that the node's Transformations make, and no first-level "
                        f"contrast ({', '.join(contrasts)})")


def _check_values(design, rows, index, where):
    """Numbers only, finite: a value missing from participants.tsv is refused, not 0."""
    for column in design.columns:
        values = pd.to_numeric(design[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raw = design[column].iloc[i]
            why = ("has no value (n/a in participants.tsv, or made so by the Transformations)"
                   if pd.isna(raw) else f"is {raw!r}, not a finite number"
                   + (" (a text column becomes indicator columns with a Factor "
                      "transformation)" if isinstance(raw, str) else ""))
            raise bad_input(where, f"Nodes[{index}].Model.X: column {column!r} of "
                            f"{rows['subject'].iloc[i]} {why}")


def _check_every_map_used(maps, outputs, participants, index, where):
    """pybids drops the maps of a subject participants.tsv lacks (and those without a
    value of a GroupBy column): refused rather than left out."""
    used = {int(i) for output in outputs for i in output.metadata[_MAP]}
    subjects = sorted(set(maps.drop(index=sorted(used))["subject"]))
    if not subjects:
        return
    lacking = [s for s in subjects if s.removeprefix("sub-") not in participants]
    if participants and lacking:
        raise bad_input(where, f"Nodes[{index}]: participants.tsv has no row for "
                        f"{', '.join(lacking)}, whose maps are the node's inputs")
    raise bad_input(where, f"Nodes[{index}]: the maps of {', '.join(subjects)} fall in no "
                    "GroupBy group (a value missing from participants.tsv?)")


def _check_rows(rows, design, group, index, where):
    """No two maps of a subject share a design row: the model could not tell them apart."""
    keys = pd.concat([rows[["subject"]], design.astype(float)], axis=1)
    twice = keys.duplicated(keep=False).to_numpy()
    if twice.any():
        same = rows[twice & (rows["subject"] == rows["subject"][twice].iloc[0]).to_numpy()]
        differ = [c for c in same.columns if c not in ("path", "variance_path")
                  and same[c].nunique() > 1]
        raise bad_input(where, f"Nodes[{index}] ({group}): {same['subject'].iloc[0]} has "
                        f"{len(same)} maps with the same design row; they differ in "
                        + "; ".join(f"{c} ({', '.join(sorted(map(str, set(same[c]))))})"
                                    for c in differ)
                        + ": add it to GroupBy, filter on it (Input), or model it")


def _weights(value, at, where):
    """A BSM weight: a number, or a fraction written as text (``"1/3"``)."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError) as err:
            raise bad_input(where, f"{at}: {value!r} is not a number or a fraction") from err
    return float(value)


def _check_contrasts(spec, columns, index, where):
    """Each contrast names design columns, with weights fitting its conditions."""
    at_node = f"Nodes[{index}]"
    for j, contrast in enumerate(spec.get("Contrasts") or []):
        at = f"{at_node}.Contrasts[{j}]"
        conditions = ["intercept" if c == 1 else c for c in contrast["ConditionList"]]
        for k, condition in enumerate(conditions):
            if condition not in columns:
                raise bad_input(where, f"{at}.ConditionList[{k}]: {condition!r} is not a "
                                f"column of the design ({', '.join(columns)})")
        rows = contrast["Weights"]
        rows = rows if rows and isinstance(rows[0], list) else [rows]
        if contrast["Test"] == "t" and len(rows) > 1:
            raise bad_input(where, f"{at}.Weights: a t test takes one row of weights, "
                            f"not {len(rows)} (use Test \"F\")")
        for r, row in enumerate(rows):
            if len(row) != len(conditions):
                raise bad_input(where, f"{at}.Weights: {len(row)} weights for "
                                f"{len(conditions)} conditions in ConditionList")
            for w, value in enumerate(row):
                _weights(value, f"{at}.Weights" + (f"[{r}]" if len(rows) > 1 else "")
                         + f"[{w}]", where)
    dummies = spec.get("DummyContrasts") or {}
    for k, condition in enumerate(dummies.get("Contrasts") or []):
        condition = "intercept" if condition == 1 else condition
        if condition not in columns:
            raise bad_input(where, f"{at_node}.DummyContrasts.Contrasts[{k}]: {condition!r} "
                            f"is not a column of the design ({', '.join(columns)})")


def _contrast(info, columns, index, where):
    """pybids' ContrastInfo as weights over every column (checked as the command line's
    JSON weights are: no row of zeros, F rows independent)."""
    rows = info.weights if info.weights and isinstance(info.weights[0], list) \
        else [info.weights]
    weights = np.zeros((len(rows), len(columns)))
    for r, row in enumerate(rows):
        for condition, value in zip(info.conditions, row):
            weights[r, columns.index(condition)] = _weights(value, "Weights", where)
    try:
        parse_contrast(weights.tolist(), columns)
    except InputError as err:
        raise bad_input(where, f"Nodes[{index}]: contrast {info.name!r}: "
                        f"{str(err).split(': ', 1)[1]}") from err
    return ModelContrast(name=str(info.name), label=contrast_label(info.name),
                         weights=weights, test=info.test or "t")


def _group_name(entities, node_name):
    if not entities:
        return contrast_label(node_name)
    return "_".join(f"{k}-{contrast_label(v)}" for k, v in sorted(entities.items()))


def model_analyses(model_path, bids_dir, *, node=None, raw_dir=None, options=None,
                   estimation=None):
    """The analyses of a BIDS Stats Model's dataset-level node on first-level maps.

    Parameters
    ----------
    model_path : path
        The model file (BSM 1.0 JSON), checked by
        :func:`~nipype_secondlevel.design.stats_models.read_model`.
    bids_dir : path
        BIDS derivatives folder of first-level statmaps (nilearn's or FitLins' names;
        in a FitLins folder, the maps of the node's source node, ``node-<name>/``).
    node : str or None
        Name of the node to run; by default the model's dataset-level node.
    raw_dir : path or None
        Folder of the ``participants.tsv`` to use; by default ``bids_dir``'s own.
    options : mapping or None
        Option names a model's ``Model.Software["nipype-secondlevel"]`` block may set,
        each with its check (see
        :func:`~nipype_secondlevel.design.stats_models.software_options`).
    estimation : str or None
        The command line's ``--estimation``, which wins over the model's.

    Returns
    -------
    list of Analysis
        One per GroupBy group, in pybids' order.

    Raises a one-line :class:`~nipype_secondlevel.io.errors.InputError` for an
    invalid model (naming the JSON path), maps that are not found, a column or
    value missing from participants.tsv, or contrasts that do not fit the design.
    """
    from ..io.derivatives import bids_layout

    where = str(model_path)
    model = read_model(model_path)
    index, spec = select_node(model, node, where)
    source, edge_filter = source_node(model, index, where)
    chosen = software_options(spec, index, options or {}, where)
    model_type = spec["Model"]["Type"]
    estimation = _estimation(model_type, chosen, index, where, estimation)
    _warn_ignored(spec, index, where)
    maps = _node_maps(bids_dir, model, index, source, edge_filter, estimation != "ols")
    layout = bids_layout(raw_dir, derivative=False) if raw_dir else bids_layout(bids_dir)
    outputs, participant_columns, participants = _run_node(
        layout, model, spec["Name"], _inputs(maps), index, where)
    _check_every_map_used(maps, outputs, participants, index, where)
    analyses = []
    for output in outputs:
        group = ", ".join(f"{k} {v}" for k, v in output.entities.items()) or "all maps"
        _check_columns(spec, output, participant_columns, sorted(set(maps["contrast"])),
                       index, where)
        design = output.X.reset_index(drop=True)
        rows = maps.iloc[output.metadata[_MAP].astype(int).to_numpy()].reset_index(drop=True)
        entities = [c for c in rows.columns if c not in (*_NOT_INPUT_ENTITIES, "subject")
                    and (rows[c] != "").any()]
        rows = rows[["subject", *entities, *rows.columns.intersection(["path", "variance_path"])]]
        _check_values(design, rows, index, where)
        _check_rows(rows, design, group, index, where)
        columns = [str(c) for c in design.columns]
        _check_contrasts(spec, columns, index, where)
        analyses.append(Analysis(
            node=spec["Name"], entities=dict(output.entities),
            name=_group_name(output.entities, spec["Name"]), rows=rows,
            design=design.astype(float),
            contrasts=tuple(_contrast(info, columns, index, where)
                            for info in output.contrasts),
            model_type=model_type, estimation=estimation, options=dict(chosen)))
    return analyses


def analysis_plan(analysis, values, made_by="", parallel=1):
    """The :class:`~nipype_secondlevel.design.plan.Plan` of an analysis.

    ``values``: the options of ``run`` resolved (:func:`~nipype_secondlevel.spec.resolve`:
    the command line's over the model's Software block), ``estimation`` the analysis'.
    An intercept alone is the one-sample design (its permutation test flips signs), any
    other design is a design matrix as ``--design file`` gives one. A ``pass`` contrast
    (effect and variance for a next level, which a dataset node does not have) is
    estimated as a t test (an F test for several rows), with one warning line: its
    effect and variance maps are among the maps written. ``parallel``: the most
    permutation chunks run at once (see :func:`~.plan.plan_analysis`).
    """
    from .plan import Design, plan_design

    columns = [str(c) for c in analysis.design.columns]
    kind = "one-sample" if [c.lower() for c in columns] == ["intercept"] else "file"
    weighted = values["estimation"] != "ols"
    design = Design(kind=kind, columns=columns,
                    matrix=analysis.design.to_numpy(dtype=float).tolist(),
                    rows={"subject": list(analysis.rows["subject"])},
                    paths=list(analysis.rows["path"]),
                    variance_paths=list(analysis.rows["variance_path"]) if weighted else None)
    contrasts = []
    for contrast in analysis.contrasts:
        test = contrast.test
        if test == "pass":
            test = "t" if len(contrast.weights) == 1 else "F"
            warnings.warn(f"node {analysis.node!r} ({analysis.name}): contrast "
                          f"{contrast.name!r} has Test 'pass' (effect and variance for a "
                          f"next level, which the dataset level has not): computed as a "
                          f"{test} test, its effect and variance maps written with it",
                          InputWarning, stacklevel=2)
        contrasts.append((contrast.label, contrast.weights.tolist(), test, contrast.name))
    return plan_design({**values, "design": kind}, "run", design, contrasts, made_by=made_by,
                       parallel=parallel)
