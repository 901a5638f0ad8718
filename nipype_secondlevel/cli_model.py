"""Layer 4: ``run --model``: a BIDS Stats Model's dataset-level node, one plan per analysis.

The model's node becomes analyses (:func:`~nipype_secondlevel.design.model_analyses.
model_analyses`: pybids builds each ``GroupBy`` group's design and contrasts); each
analysis' options are those of the model's ``Model.Software["nipype-secondlevel"]``
block, overridden by the command line's, resolved by the spec as any run's; each gets
its inputs table (written into the work folder, exported beside its results) and its
plan (:func:`~nipype_secondlevel.design.model_analyses.analysis_plan`).
"""

from pathlib import Path

from .io.errors import bad_input
from .spec import OptionError, option, options, resolve
from .spec.options import BIDS, MODEL, MODEL_DECIDES, MODEL_PATHS


def software_checks():
    """Option name -> check, for every option a model's Software block may set: the
    options of ``run`` that change the results, but the inputs, the paths and what the
    model decides itself (design, contrasts, filters). A check returns the value parsed
    or raises ValueError with the problem."""
    def check(spec):
        def parse(value):
            if spec.kind == "flag" and not isinstance(value, bool):
                raise ValueError(f"must be true or false, got {value!r}")
            try:
                return spec.parse(value)
            except OptionError as err:
                raise ValueError(str(err).removeprefix(f"{spec.switch}: ")) from None
        return parse

    return {spec.name: check(spec) for spec in options("run")
            if spec.results and spec.one_of is None and spec.group not in (BIDS, MODEL)
            and spec.name not in (*MODEL_DECIDES, *MODEL_PATHS)}


def resolve_with_model(given, command):
    """:func:`~nipype_secondlevel.spec.resolve` of the options given on the command line
    over those of the ``--model``'s Software block (each checked, one line naming its JSON
    path), so that they are checked together before anything runs: ``--n-perm`` on the
    command line goes with the model's permutation ``correction``. A conflict that the
    model's values make is one line naming the model's block."""
    if given.get("model") is None:
        return resolve(given, command)
    from .design.stats_models import SOFTWARE, read_model, select_node, software_options

    where = str(Path(given["model"]).absolute())
    model = read_model(where)
    index, node = select_node(model, given.get("node"), where)
    chosen = software_options(node, index, software_checks(), where)
    try:
        return resolve({**chosen, **given}, command)
    except OptionError as err:
        try:
            resolve(given, command)
        except OptionError:
            raise err from None  # the command line's own
        raise bad_input(where, f"Nodes[{index}].Model.Software.{SOFTWARE} with the command "
                        f"line: {err}") from err


def _inputs_table(analysis, weighted):
    """The analysis' maps as an inputs table (``--inputs`` reads it back)."""
    rows = analysis.rows
    table = rows[["subject"]].copy()
    if "contrast" in rows:
        table["condition"] = rows["contrast"]
    table["path"] = rows["path"]
    if weighted:
        table["variance_path"] = rows["variance_path"]
    return table


def model_plans(given, values):
    """(results subfolder, Plan) of every analysis of ``run --model``.

    ``given``: the options given on the command line; ``values``: them resolved.
    A value of the model's Software block that conflicts with another option is one
    line naming the model file and the block.
    """
    from .cli import default_chunks, participants_dir, write_work_table
    from .design.model_analyses import analysis_plan, model_analyses
    from .design.plan import call_text

    model = Path(values["model"]).absolute()
    deriv = Path(values["bids_dir"]).absolute()
    raw = participants_dir(values)
    call = call_text("model_analyses", str(model), str(deriv), node=values["node"],
                     raw_dir=raw and str(Path(raw).absolute()))
    analyses = model_analyses(model, deriv, node=values["node"], raw_dir=raw,
                              options=software_checks(), estimation=given.get("estimation"))
    command_line = {k: v for k, v in given.items() if option(k, "run").results}
    plans = []
    parallel = default_chunks(values["plugin"], values["n_procs"])
    for i, analysis in enumerate(analyses):
        try:
            resolved = resolve({**analysis.options, "estimation": analysis.estimation,
                                **command_line}, "run")
        except OptionError as err:  # (the estimation of Type "meta")
            raise bad_input(str(model), f"node {analysis.node!r}: Type "
                            f"{analysis.model_type!r} (estimation {analysis.estimation}) with "
                            f"the options: {err}") from err
        resolved["node"] = analysis.node  # the node run, named or found
        source = {"BIDSDir": str(deriv), "Model": str(model), "Node": analysis.node,
                  "Group": analysis.entities,
                  "ParticipantsFrom": str(Path(raw or deriv).absolute())}
        table = _inputs_table(analysis, resolved["estimation"] != "ols")
        resolved["inputs_table"] = write_work_table(
            table, Path(values["work_dir"]) / "model_inputs" / analysis.name, source)
        plans.append((analysis.name, analysis_plan(
            analysis, resolved, made_by=f"analysis_plan({call}[{i}], ...)", parallel=parallel)))
    return plans
