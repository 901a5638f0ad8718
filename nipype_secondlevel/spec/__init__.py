"""The analysis spec: every option of every command, written once.

A declarative table (:data:`OPTIONS`) from which the command line is generated
(:mod:`nipype_secondlevel.cli_options`), whose names are the keyword options of the
plan (:func:`nipype_secondlevel.design.plan.plan_analysis`), and whose value sets and
defaults the builders, interfaces, sidecars and report read. Each :class:`Option` says
its flag, its value set or validator (every number in a finite range: nothing a user
types may make a run hang or exhaust memory), its default, its help, the commands that
have it, its help group, and whether it changes the results (recorded in the plan) or
only how the run runs. :func:`resolve` validates given values, checks the options
against each other (one-line messages naming them) and fills in the defaults.

``values`` holds the value sets and validators, ``options`` the table, ``checks`` the
resolution and the checks between options. A room of its own, imported by every other:
no import from the rest of the package, no nipype, no numpy, so that ``--help`` answers at
once.
"""

from .checks import check_options, height_control, resolve, result_options
from .options import DEFAULTS, OPTIONS, Option, option, options
from .values import (
    ACCELERATIONS,
    ANALYSES,
    ATLASES,
    AUTO_PLUGIN,
    CLUSTER_CORRECTIONS,
    CORRECTIONS,
    DESIGNS,
    DOMAINS,
    ESTIMATIONS,
    EXTENT_CORRECTIONS,
    HEIGHT_CONTROLS,
    MASK_STRATEGIES,
    PERM_SCHEMES,
    PERMUTATION_CORRECTIONS,
    PLUGINS,
    SURFACE_EXTENTS,
    VOXEL_BLOCK,
    Integer,
    Number,
    OptionError,
)

__all__ = [
    "ACCELERATIONS", "ANALYSES", "ATLASES", "AUTO_PLUGIN", "CLUSTER_CORRECTIONS",
    "CORRECTIONS", "DEFAULTS", "DESIGNS", "DOMAINS", "ESTIMATIONS", "EXTENT_CORRECTIONS",
    "HEIGHT_CONTROLS", "MASK_STRATEGIES", "OPTIONS",
    "PERMUTATION_CORRECTIONS", "PERM_SCHEMES", "PLUGINS", "SURFACE_EXTENTS", "VOXEL_BLOCK",
    "Integer", "Number", "Option", "OptionError", "check_options", "height_control", "option",
    "options", "resolve", "result_options",
]
