"""Layer 4: the command line of ``nipype-secondlevel``, generated from the spec.

Every option, its values, default and help come from :data:`nipype_secondlevel.spec.OPTIONS`;
this module only turns the table into argparse parsers. Kept free of nipype and of the
analysis modules, so that ``--help`` answers at once.
"""

import argparse

from . import __version__
from .spec import OPTIONS, OptionError, options

PROG = "nipype-secondlevel"
#: The commands and their one-line help (``graph``'s description says how to use it).
COMMANDS = {
    "demo": "the reference paired analysis on the built-in simulated sample",
    "localizer": "the reference analysis on Brainomics/Localizer (downloads)",
    "run": "any group design on your own maps (an inputs table, or a BIDS dataset)",
    "graph": "draw the workflow graph of a command (PNG and SVG)",
}
DESCRIPTIONS = {
    "run": "Group analysis of the maps listed in an inputs table (TSV: subject, path, "
    "condition and/or group, optional variance_path and covariate columns), or found in "
    "a BIDS derivatives dataset.",
    "graph": "Draw the pipeline of a command, e.g. 'graph run --inputs inputs.tsv "
    "--design two-sample', without running it (default: the demo's).",
}


def join_dash_values(argv):
    """``--sbatch-args --time=30`` as ``--sbatch-args=--time=30``, which argparse reads
    (a value starting with '-' would be taken for an option of its own)."""
    dash_values = {o.switch for o in OPTIONS if o.name in ("sbatch_args", "plugin_args")}
    joined, rest = [], iter(argv)
    for arg in rest:
        value = next(rest, None) if arg in dash_values else None
        joined.append(arg if value is None else f"{arg}={value}")
    return joined


def _argparse_type(spec):
    """The option's validator as an argparse type (its message on argparse's error line)."""
    def parse(text):
        try:
            return spec.kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = spec.name
    return parse


def help_text(spec, command):
    """The help of an option: what it does, its values and its default."""
    parts = [spec.values_text()] if spec.values_text() else []
    if spec.kind != "flag":
        shown = spec.default_text
        if shown is None:
            value = spec.default
            shown = (value.format(command=command) if isinstance(value, str) else
                     " ".join(map(str, value)) if isinstance(value, (tuple, list)) else value)
        parts.append(f"default: {shown}")
    text = spec.help + (f" ({'; '.join(parts)})" if parts else "")
    return text.replace("%", "%%")


def add_option(parser, spec, command):
    """Add one option of the spec to ``parser`` (every default None: 'not given')."""
    if spec.flag == "pipeline":  # graph's positional remainder
        parser.add_argument(spec.name, nargs=argparse.REMAINDER, metavar=spec.metavar,
                            help=help_text(spec, command))
        return
    kwargs = {"dest": spec.name, "default": None, "help": help_text(spec, command)}
    if spec.kind == "flag":
        parser.add_argument(spec.switch, action="store_true", **kwargs)
        return
    if isinstance(spec.kind, tuple):
        kwargs["choices"] = list(spec.kind)
    else:
        kwargs["type"] = _argparse_type(spec)
    if spec.nargs == "append":
        kwargs["action"] = "append"
    elif spec.nargs:
        kwargs["nargs"] = spec.nargs
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    parser.add_argument(spec.switch, **kwargs)


def add_command(commands, command):
    """The parser of one command, its options in their help groups."""
    parser = commands.add_parser(command, help=COMMANDS[command],
                                 description=DESCRIPTIONS.get(command, COMMANDS[command]))
    groups, exclusive = {}, {}
    for spec in options(command):
        if spec.one_of:
            if spec.one_of not in exclusive:
                exclusive[spec.one_of] = parser.add_mutually_exclusive_group(required=True)
            target = exclusive[spec.one_of]
        elif spec.group == "graph":
            target = parser
        else:
            if spec.group not in groups:
                groups[spec.group] = parser.add_argument_group(spec.group)
            target = groups[spec.group]
        add_option(target, spec, command)
    return parser


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Group-level fMRI statistics as a Nipype workflow.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        add_command(commands, command)
    return parser


def given_options(args):
    """The options given on the command line (name -> value), the command left out."""
    return {k: v for k, v in vars(args).items()
            if k not in ("command", "argv") and v is not None}


__all__ = ["PROG", "OptionError", "build_parser", "given_options", "join_dash_values"]
