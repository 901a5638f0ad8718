"""The names of the files a run exports: one table of BIDS entities per output.

Interfaces write plain names in their own node folders (``z.nii.gz``,
``thresholded.nii.gz``, ``logp_max.nii.gz``, ...); the sink gives every exported file
its name from :data:`OUTPUTS`. The plan knows every contrast's label and kind before
the run, so the builder gives the sink a *rule* for each output: the exported name of
an item that is one file, or ``{plain name: exported name}`` for an item of several
files (a contrast's maps, a permutation test's -log10 p maps, the graph's formats), and
a list of rules for the outputs of a MapNode (one item per contrast). A file without a
name is an error, never a guess (:func:`named_files`).
"""

from pathlib import Path

from .sidecars import sidecar_path

#: Output -> (BIDS entities, suffix, extension); ``{braces}`` are filled per file.
OUTPUTS = {
    "statmap": ("contrast-{contrast}_stat-{stat}", "statmap", ".nii.gz"),
    "thresholded": ("contrast-{contrast}_stat-z_desc-thresholded", "statmap", ".nii.gz"),
    "clusters": ("contrast-{contrast}_stat-z", "clusters", ".tsv"),
    "glass_brain": ("contrast-{contrast}_stat-z", "glassbrain", ".png"),
    "surface_picture": ("contrast-{contrast}_stat-z", "surfaces", ".png"),
    "logp": ("contrast-{contrast}_stat-{stat}_desc-{desc}", "logp", ".nii.gz"),
    "nulls": ("contrast-{contrast}_desc-nulls", "permutations", ".tsv"),
    "corrected": ("contrast-{contrast}_stat-z_desc-{desc}corrected", "statmap", ".nii.gz"),
    "corrected_clusters": ("contrast-{contrast}_stat-z_desc-{desc}corrected", "clusters",
                           ".tsv"),
    "mask": ("desc-group", "mask", ".nii.gz"),
    "coverage": ("stat-n_desc-coverage", "statmap", ".nii.gz"),
    "between_subject_variance": ("desc-{estimation}", "betweenSubjectVariance", ".nii.gz"),
    "truth_mask": ("desc-truth", "mask", ".nii.gz"),
    "graph": ("desc-pipeline", "graph", ".{format}"),
}
#: Files named as they are, without entities.
DESIGN_TABLE, DESIGN_PLOT, REPORT, PLAN = "design.tsv", "design.png", "report.html", "plan.json"
INPUTS_TABLE, DATASET_DESCRIPTION = "inputs.tsv", "dataset_description.json"
BIDSIGNORE = ".bidsignore"
#: Outputs whose names the BIDS specification has (the others go into .bidsignore).
IN_BIDS = ("mask", "truth_mask")

#: The maps of a contrast, by kind (written by the contrast node as ``<stat>.nii.gz``).
CONTRAST_STATISTICS = {"t": ("z", "t", "p", "effect", "variance", "dof"),
                       "F": ("z", "F", "p", "dof")}
#: desc- entity of every -log10 p map, by PermutationResult field ({stat}: T or F).
LOGP_DESCS = {
    "logp_max": "max{stat}",
    "logp_uncorrected": "uncorrected",
    "logp_cluster_size": "clusterSize",
    "logp_cluster_mass": "clusterMass",
    "logp_tfce": "TFCE",
}
#: The PermutationResult field of each permutation correction.
CORRECTION_FIELDS = {
    "maxT": "logp_max",
    "cluster-size": "logp_cluster_size",
    "cluster-mass": "logp_cluster_mass",
    "tfce": "logp_tfce",
}
#: Exports that are maps, with the plain name (no extension) of those of one file per item;
#: on a surface or CIFTI domain they are written as GIFTI pairs or CIFTI files.
DOMAIN_MAPS = {"mask_file": "mask", "coverage_map": "coverage",
               "thresholded_maps": "thresholded",
               "corrected_maps": "corrected", "between_subject_variance": "between_subject_variance",
               "contrast_files": None, "logp_maps": None}
#: Extension of a map by domain (a surface map is a ``hemi-L_`` and a ``hemi-R_`` file).
DOMAIN_EXTENSIONS = {"surface": ".func.gii", "cifti": ".dscalar.nii"}
#: The graph's formats (written by the graph node as ``graph.<format>``).
GRAPH_FORMATS = ("dot", "svg", "png")


def output_name(output, **entities):
    """The exported name of an output of :data:`OUTPUTS`, e.g.
    ``output_name("statmap", contrast="aMinusB", stat="z")``."""
    labels, suffix, extension = OUTPUTS[output]
    return f"{labels}_{suffix}{extension}".format(**entities)


#: The estimate nodes' 4D parameter estimates, read back by the contrasts and never
#: exported: written uncompressed (gzip cost the demo's estimate 0.3 s and its contrast
#: 0.15 s of CPU for its 17 float64 volumes).
BETA_NAME = "beta.nii"


def plain_name(key, extension=".nii.gz"):
    """The name under which an interface writes one of several files of an item."""
    return f"{key}{extension}"


def correction_desc(correction, kind):
    """desc- entity of a permutation correction's -log10 p map (e.g. maxT, clusterSize)."""
    return LOGP_DESCS[CORRECTION_FIELDS[correction]].format(stat="T" if kind == "t" else "F")


def contrast_maps(label, kind):
    """Rule of a contrast's maps: {plain name: exported name} of every map it may have."""
    return {plain_name(stat): output_name("statmap", contrast=label, stat=stat)
            for stat in CONTRAST_STATISTICS[kind]}


def logp_maps(label, kind):
    """Rule of a permutation test's -log10 p maps."""
    stat = "t" if kind == "t" else "F"
    return {plain_name(field): output_name(
        "logp", contrast=label, stat=stat, desc=desc.format(stat=stat.upper()))
        for field, desc in LOGP_DESCS.items()}


def graph_files():
    """Rule of the pipeline graph's files."""
    return {plain_name("graph", f".{fmt}"): output_name("graph", format=fmt)
            for fmt in GRAPH_FORMATS}


def bidsignore_patterns():
    """The lines of ``.bidsignore``: our names the BIDS specification does not have yet
    (BIDS Stats Models' statmap, logp... and our own), as its derivatives conventions do,
    so that bids-validator checks the rest."""
    patterns = []
    for output, (_, suffix, extension) in OUTPUTS.items():
        if output not in IN_BIDS:
            extension = ".*" if "{" in extension else extension
            patterns += [f"*_{suffix}{extension}", f"*_{suffix}.json"]
    files = (DESIGN_TABLE, DESIGN_PLOT, REPORT, PLAN, INPUTS_TABLE)
    return list(dict.fromkeys([*patterns, *files, *(f"{Path(f).stem}.json" for f in files)]))


def named_files(outputs, rules):
    """(source path, exported name) of every file of ``outputs``, then of their sidecars.

    ``outputs``: key -> a file, a list of files, or (a MapNode's output) a list with one
    of those per item; ``rules``: key -> a rule, or a list of rules, one per item (see
    the module notes). Raises ValueError for a file the rules do not name or an item
    count that differs from the rules'.
    """
    pairs = []
    for key, rule in rules.items():
        value = outputs[key]
        if isinstance(rule, list):
            if not isinstance(value, list) or len(value) != len(rule):
                raise ValueError(f"{key}: {value!r} is not one item per rule ({len(rule)})")
            items = list(zip(value, rule))
        else:
            items = [(value, rule)]
        for item, item_rule in items:
            files = [item] if isinstance(item, str) else list(item)
            if isinstance(item_rule, str):
                if len(files) != 1:
                    raise ValueError(f"{key}: {len(files)} files for the one name {item_rule}")
                pairs.append((str(files[0]), item_rule))
                continue
            for path in files:
                if Path(path).name not in item_rule:
                    raise ValueError(f"{key}: no exported name for {path}")
                pairs.append((str(path), item_rule[Path(path).name]))
    sidecars = [(str(sidecar_path(source)), sidecar_path(name).name) for source, name in pairs
                if sidecar_path(source) != Path(source) and sidecar_path(source).exists()]
    return pairs + sidecars


def exported_sources(fields, exported, own=None):
    """A sidecar's ``Sources`` with every source the run exports under its exported name.

    ``fields``: the sidecar's fields; ``exported``: source path -> exported name; ``own``:
    (path, exported name) of the sidecar's file: a source of the same base name (the
    table a labelling node rewrote under its own name) is named as the file.
    """
    if "Sources" not in fields or "SourceFiles" not in fields:
        return fields
    own_path, own_name = own or ("", "")
    sources = [exported.get(str(path), own_name if Path(path).name == Path(own_path).name
                            else name)
               for name, path in zip(fields["Sources"], fields["SourceFiles"])]
    return {**fields, "Sources": sources}


def on_domain(rule, domain, plain=None):
    """The rule of a map written on a surface or CIFTI domain, from its volume rule.

    ``rule``: an exported name (``plain``: the map's plain name without extension), a
    ``{plain name: exported name}`` dict, or a list of them. A surface map becomes its
    two files, ``hemi-L_<name>.func.gii`` and ``hemi-R_...``; a CIFTI map
    ``<name>.dscalar.nii``.
    """
    if isinstance(rule, list):
        return [on_domain(item, domain, plain) for item in rule]
    pairs = rule.items() if isinstance(rule, dict) else [(plain_name(plain), rule)]
    extension = DOMAIN_EXTENSIONS[domain]
    prefixes = ("hemi-L_", "hemi-R_") if domain == "surface" else ("",)
    return {f"{prefix}{source.removesuffix('.nii.gz')}{extension}":
            f"{prefix}{name.removesuffix('.nii.gz')}{extension}"
            for source, name in pairs for prefix in prefixes}
