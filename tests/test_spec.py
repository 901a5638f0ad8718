"""The spec: every option, its value set and its default written once; every command's
--help lists them; the options are checked against each other before anything runs."""

import ast
import re

import pytest
from conftest import ROOT

from nipype_secondlevel import spec
from nipype_secondlevel.cli_options import build_parser

PACKAGE = ROOT / "nipype_secondlevel"
SOURCES = {p: ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")
           if p.relative_to(PACKAGE).parts[0] != "spec"}
NAMES = {o.name for o in spec.OPTIONS}


def literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def test_no_value_set_is_written_twice():
    """No tuple or list of the package (outside the spec) spells an option's value set."""
    sets = {o.name: frozenset(o.kind) for o in spec.OPTIONS if isinstance(o.kind, tuple)}
    sets |= {"atlases": frozenset(spec.ATLASES), "plugins": frozenset(spec.PLUGINS)}
    copies = []
    for path, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1:
                value = literal(node)
                if value and all(isinstance(v, str) for v in value):
                    copies += [f"{path.name}:{node.lineno} {name}"
                               for name, choices in sets.items()
                               if frozenset(value) in (choices, choices - {"none"})]
    assert copies == [], copies


def duplicate(name, node):
    """True when ``node`` writes a default of the option ``name`` again: a number for a
    numeric option, else the spec's own default (empty ones aside)."""
    value = literal(node)
    if name not in NAMES or node is None or value is None or isinstance(value, bool):
        return False
    option = spec.option(name)
    if isinstance(option.kind, (spec.Integer, spec.Number)):
        return isinstance(value, (int, float))
    default = list(option.default) if isinstance(option.default, tuple) else option.default
    shown = list(value) if isinstance(value, tuple) else value
    return bool(shown) and shown == default


#: The runtime's own defaults of its run function are the runtime branch's to fold in.
OWN_DEFAULTS = ("runtime",)


def test_no_default_is_written_twice():
    """No parameter or trait named after an option writes its default again (it reads
    the spec's: ``DEFAULTS[...]``); VOXEL_BLOCK is not given a value outside the spec."""
    copies = []
    for path, tree in SOURCES.items():
        if path.relative_to(PACKAGE).parts[0] in OWN_DEFAULTS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                args = node.args.args[len(node.args.args) - len(node.args.defaults):]
                pairs = [*zip(args, node.args.defaults),
                         *zip(node.args.kwonlyargs, node.args.kw_defaults)]
                copies += [f"{path.name}:{node.lineno} {arg.arg}" for arg, value in pairs
                           if duplicate(arg.arg, value)]
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
                if name == "VOXEL_BLOCK":
                    copies.append(f"{path.name}:{node.lineno} VOXEL_BLOCK")
                if isinstance(value, ast.Call) and ast.unparse(value.func).startswith("traits."):
                    given = [*value.args[:1], *(k.value for k in value.keywords
                                                if k.arg in ("value", "default"))]
                    copies += [f"{path.name}:{node.lineno} {name}" for v in given
                               if duplicate(name, v)]
    assert copies == [], copies


@pytest.mark.parametrize("command", ["run", "demo", "localizer", "graph"])
def test_help_lists_every_option_with_its_values_and_default(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    # (argparse wraps lines at hyphens too)
    text = re.sub(r"(?<=\w)- (?=\w)", "-", " ".join(capsys.readouterr().out.split()))
    for option in spec.options(command):
        assert option.switch in text or option.metavar in text, option.name
        if isinstance(option.kind, tuple):
            assert "one of " + ", ".join(option.kind) in text, option.name
        elif option.kind != "flag" and hasattr(option.kind, "describe"):
            assert option.kind.describe() in text, option.name
        if option.kind != "flag" and option.default_text is None:
            shown = option.default
            shown = (" ".join(map(str, shown)) if isinstance(shown, tuple)
                     else str(shown).format(command=command))
            assert f"default: {shown}" in text, option.name


def test_resolve_fills_defaults_and_leaves_out_what_does_not_apply():
    values = spec.resolve({"correction": "fdr"}, "run")
    assert values["alpha"] == 0.05 and values["threshold"] is None
    assert values["n_perm"] is None and values["design"] == "one-sample"
    values = spec.resolve({"correction": "tfce", "n_perm": "12"}, "demo")
    assert (values["n_perm"], values["threshold"], values["alpha"]) == (12, 3.1, 0.05)
    assert spec.resolve({"alpha": 0.01}, "demo")["threshold"] is None
    assert spec.resolve({"mask": "m.nii"}, "demo")["mask_strategy"] is None
    assert spec.resolve({"atlases": ["none"]}, "demo")["atlases"] == []


@pytest.mark.parametrize(("given", "command", "message"), [
    ({"n_perm": 12}, "demo", "--n-perm 12: is for --correction maxT, cluster-size, cluster"),
    ({"threshold": 2, "correction": "fdr"}, "demo",
     "--threshold 2.0: the threshold of --correction fdr is set by --alpha"),
    ({"alpha": 0.01, "threshold": 2}, "demo", "--alpha 0.01: conflicts with --threshold 2.0"),
    ({"cluster_forming_p": 0.01, "correction": "maxT"}, "demo",
     "--cluster-forming-p 0.01: is for --correction cluster-size, cluster-mass"),
    ({"groups": ["a", "b"], "design": "paired"}, "run",
     "--groups a b: is for --design two-sample, not --design paired"),
    ({"first_level_dof": 50}, "run", "--first-level-dof 50.0: is for --estimation fixed"),
    ({"design": "file"}, "run", "--design file: needs --design-file"),
    ({"task": ["x"]}, "run", "--task: is a filter of --bids-dir, which is not given"),
    ({"n_perm": 0, "correction": "tfce"}, "demo",
     "--n-perm: must be an integer from 1 to 1,000,000, got 0"),
    ({"smoothing_fwhm": float("inf")}, "demo", "--smoothing-fwhm: must be a number above 0"),
    ({"plugin_args": "[1]"}, "demo", "--plugin-args: must be a JSON object"),
    ({"plugin_args": '{"a": NaN}'}, "demo", "--plugin-args: must be a JSON object of finite"),
    ({"seed": 1}, "run", "seed: not an option of run"),
])
def test_conflicts_and_bad_values_are_one_line(given, command, message):
    with pytest.raises(spec.OptionError) as error:
        spec.resolve(given, command)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_every_option_has_a_finite_range_or_a_value_set():
    """Nothing a user types may make a run hang: every number is bounded."""
    for option in spec.OPTIONS:
        if isinstance(option.kind, (spec.Integer, spec.Number)):
            assert abs(option.kind.low) < 1e9 and option.kind.high <= 2**32, option.name
    numeric = {o.name for o in spec.OPTIONS if isinstance(o.kind, (spec.Integer, spec.Number))}
    assert {"n_perm", "n_chunks", "mem_gb", "n_procs", "cluster_size", "threshold",
            "smoothing_fwhm", "n_subjects", "poll_interval", "cluster_forming_p",
            "alpha"} <= numeric


def test_options_and_commands_are_unique():
    pairs = [(o.name, c) for o in spec.OPTIONS for c in o.commands]
    assert len(pairs) == len(set(pairs))
    switches = [(o.switch, c) for o in spec.OPTIONS for c in o.commands]
    assert len(switches) == len(set(switches))
    assert all(re.fullmatch(r"[a-z_]+", o.name) for o in spec.OPTIONS)
