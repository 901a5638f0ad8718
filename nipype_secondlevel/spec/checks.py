"""Options resolved: given values validated, checked against each other, defaults filled."""

from .options import CORRECTED_ALPHA, DEFAULTS, MODEL_DECIDES, option, options
from .values import PERMUTATION_CORRECTIONS, OptionError


def resolve(given, command, fixed=None):
    """Every option of ``command``: the ``given`` ones validated, then checked against each
    other, the others at their defaults (a tuple default as a list).

    ``given`` maps option names to values (None: not given); ``fixed`` sets options the
    command fixes itself (e.g. the demo's paired design). Raises :class:`OptionError`
    (one line naming the option) for an unknown option, a bad value or a conflict.
    """
    known = {o.name: o for o in options(command)}
    unknown = sorted(set(given) - set(known) - set(fixed or ()))
    if unknown:
        raise OptionError(f"{unknown[0]}: not an option of {command} (options: "
                          f"{', '.join(known)})")
    values = {}
    for name, value in {**given, **(fixed or {})}.items():
        spec = known.get(name) or option(name)
        values[name] = None if value is None or value == [] and spec.nargs else spec.parse(value)
    check_options(values, command)
    for name, spec in known.items():
        if values.get(name) is None:
            value = spec.default
            values[name] = (value.format(command=command) if isinstance(value, str)
                            else list(value) if isinstance(value, tuple) else value)
    # What does not apply is None: an option given only with another one (a permutation
    # option without a permutation test...), the threshold under a correction at --alpha.
    for name, spec in known.items():
        if spec.only_with and not _applies(spec, values):
            values[name] = None
    if values.get("alpha") is None and values.get("correction", "none") != "none":
        values["alpha"] = CORRECTED_ALPHA
    if "threshold" in values and height_control(values) != "none":
        values["threshold"] = None
    if values.get("mask") is not None:
        values["mask_strategy"] = None
    if values.get("atlases") == ["none"]:
        values["atlases"] = []
    return {name: values[name] for name in [*(fixed or ()), *known]}


def _applies(spec, values):
    other, wanted = spec.only_with
    return values.get(other) is not None if wanted is None else values.get(other) in wanted


def height_control(values):
    """The height control of the parametric thresholds: the correction when it is FDR or
    Bonferroni, uncorrected p with --alpha under --correction none, else the z threshold."""
    correction = values.get("correction", "none")
    if correction in ("fdr", "bonferroni"):
        return correction
    return "fpr" if correction == "none" and values.get("alpha") is not None else "none"


def check_options(values, command):
    """Options that cannot go together, as one :class:`OptionError` line naming them.

    ``values``: the given options (None: not given). Run by :func:`resolve`, before
    anything else reads a file.
    """
    def given(name):
        value = values.get(name)
        return value not in (None, False, [])

    def said(name):
        value = values[name]
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        return option(name, command).switch + ("" if value is True else f" {shown}")

    for spec in options(command):
        if spec.only_with and given(spec.name):
            other, wanted = spec.only_with
            if wanted is None:
                if not given(other):
                    raise OptionError(f"{spec.switch}: is a filter of "
                                      f"{option(other).switch}, which is not given")
                continue
            value = values.get(other) or DEFAULTS[other]
            if value not in wanted:
                raise OptionError(f"{said(spec.name)}: is for {option(other).switch} "
                                  f"{', '.join(wanted)}, not {option(other).switch} {value}")
    correction = values.get("correction") or "none"
    estimation = values.get("estimation") or "ols"
    if correction in PERMUTATION_CORRECTIONS and estimation != "ols":
        raise OptionError(
            f"--correction {correction}: permutation tests need --estimation ols: with "
            f"{estimation} effects every map has its own first-level variance, so the maps "
            "are not exchangeable and permuting them gives no valid p; use --correction "
            f"none, fdr or bonferroni with --estimation {estimation}")
    if given("threshold") and correction in ("fdr", "bonferroni"):
        raise OptionError(f"{said('threshold')}: the threshold of --correction {correction} "
                          "is set by --alpha")
    if given("threshold") and given("alpha") and correction == "none":
        raise OptionError(f"{said('alpha')}: conflicts with {said('threshold')}: with "
                          "--correction none give a z threshold or an uncorrected p, not both")
    if given("mask") and given("mask_strategy"):
        raise OptionError(f"{said('mask')}: conflicts with {said('mask_strategy')}: give "
                          "one of them")
    if given("atlases") and "none" in values["atlases"] and len(values["atlases"]) > 1:
        raise OptionError("--atlas none: cannot go with other atlases")
    if given("model") and not given("bids_dir"):
        raise OptionError(f"{said('model')}: needs --bids-dir, the first-level maps the "
                          "model's node takes")
    if given("node") and not given("model"):
        raise OptionError(f"{said('node')}: names a node of --model, which is not given")
    for name in MODEL_DECIDES if given("model") else ():
        if given(name):
            raise OptionError(f"{said(name)}: with --model the model decides it (its "
                              "Input, GroupBy, Model and Contrasts): change the model file")
    if given("min_subjects") and given("min_coverage"):
        raise OptionError(f"{said('min_subjects')}: conflicts with {said('min_coverage')}: "
                          "give one of them")
    if values.get("design") == "file" and not given("design_file"):
        raise OptionError("--design file: needs --design-file")


def result_options(values, command):
    """The options of ``values`` that change the results (those the plan records)."""
    return {k: v for k, v in values.items()
            if k not in {o.name for o in options(command)} or option(k, command).results}
