"""The plan of an analysis: every decision made once, before the first node.

:func:`plan_analysis` reads the options once (:func:`nipype_secondlevel.spec.resolve`:
values checked, conflicts refused, defaults filled), reads the inputs table once, builds
the design (matrix, row labels, maps, variance maps, exchangeability blocks), checks
every map's header, resolves the default and the user's contrasts into weights, and for
a permutation test chooses, per contrast, the model, the scheme, the patterns (all of
them or random ones) and the chunks of pattern indices, and the cluster-forming
statistic. The result, a :class:`Plan`, is a plain tree of dataclasses that turns into
JSON and back (``plan.json`` in the results folder); the builders give each node the
pieces it needs as values, so a node reruns only when its own piece changes.

Maps of a data source that exists only at run time (the demo's simulation, the
Localizer download, a first-level workflow) come with their row labels known in advance:
the plan is made from the labels (``rows``) and a node matches the source's maps to the
plan's rows (:class:`~nipype_secondlevel.interfaces.SelectMaps`).
"""

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from ..io.domains import (
    NOT_APPLICABLE,
    check_domain,
    check_domain_options,
    plan_domain,
    surface_extent,
)
from ..io.errors import bad_input
from ..io.grids import check_smoothing
from ..spec import (
    CLUSTER_CORRECTIONS,
    DEFAULTS,
    DOMAINS,
    PERMUTATION_CORRECTIONS,
    height_control,
    option,
    resolve,
    result_options,
)
from ..stats import permutation as perm
from ..stats.permutation.repeats import balanced_chunk_bounds, sign_symmetric
from .contrasts import cluster_forming_value, parse_contrasts
from .matrices import group_design
from .pairs import paired_rows
from .tables import LABEL_COLUMNS, read_inputs_table

PLAN_VERSION = 1


@dataclass
class Design:
    """The design matrix and its rows: one row per map, in the inputs table's order."""

    kind: str  # one of spec.DESIGNS
    columns: list
    matrix: list  # one list of floats per row
    rows: dict  # label column (subject; condition, group) -> one label per row
    paths: list = None  # the maps; None: they come from a data source at run time
    variance_paths: list = None  # first-level variance maps (the table's, if it has them)
    blocks: list = field(default_factory=list)  # exchangeability block of every row

    def frame(self):
        """The design matrix as a DataFrame."""
        return pd.DataFrame(self.matrix, columns=self.columns, dtype=float)


@dataclass
class Permutations:
    """One contrast's permutation test, decided (see :mod:`..stats.permutation`)."""

    model: str  # paired (sign flips of differences), one-sample or glm (Freedman-Lane)
    scheme: str  # sign-flip or permute
    n_subjects: int  # rows permuted (subjects, or paired differences)
    n_perm: int  # patterns, identity included
    exhaustive: bool
    seed: int
    blocks: list = None  # exchangeability block code of every row (permute), or None
    keys: list = None  # design row of every row when some are equal (exhaustive permute)
    pairs: list = None  # paired: [rows of the first condition, rows of the second]
    chunks: list = field(default_factory=list)  # [start, stop) of every job
    tail: str = "two-sided"  # or positive
    cluster_forming: list = None  # [p, threshold on the statistic] (cluster corrections)

    def patterns(self):
        """The :class:`~..stats.permutation.PermutationPlan` of these patterns."""
        return perm.PermutationPlan(self.scheme, self.n_subjects, self.n_perm,
                                    self.exhaustive, self.seed,
                                    None if self.blocks is None else tuple(self.blocks),
                                    None if self.keys is None else tuple(self.keys))


@dataclass
class Contrast:
    """A contrast: its label (file names), weights (one row: t; several: F)."""

    label: str
    weights: list
    kind: str  # t or F
    two_sided: bool  # thresholded on both signs (F: never)
    specification: str  # as given, or the design's default
    permutations: Permutations = None


@dataclass
class Plan:
    """Everything an analysis does, decided before its first node (see the module notes).

    ``options`` holds the resolved value of every option that changes the results
    (spec names; None where an option does not apply). ``source`` says where the maps
    come from: ``table`` (``design.paths``), ``simulation`` or ``localizer`` (a node of
    the pipeline), ``runtime`` (the analysis workflow's ``inputs_table`` input).
    """

    options: dict
    design: Design
    contrasts: list
    source: str = "table"
    domain: str = "volume"  # one of spec.DOMAINS
    made_by: str = ""  # the Python call that made it (provenance)
    version: int = PLAN_VERSION

    @property
    def labels(self):
        return [c.label for c in self.contrasts]

    @property
    def weighted(self):
        """Estimated with the first-level variances (mixed or fixed effects)."""
        return self.options.get("estimation", "ols") != "ols"

    @property
    def with_variances(self):
        """The variance maps are read: for a weighted estimate, and whenever the table
        has them (they show where each map's own mask ends: missing values)."""
        return self.weighted or self.design.variance_paths is not None

    @property
    def subjects(self):
        """The subject of every row (the row itself when the design has no subject)."""
        return [str(s) for s in self.design.rows.get("subject", range(len(self.design.matrix)))]

    @property
    def min_subjects(self):
        """Fewest subjects a voxel is analysed with: --min-subjects, else
        ceil(--min-coverage x subjects), at least 1."""
        given = self.options.get("min_subjects")
        if given:
            return int(given)
        fraction = self.options.get("min_coverage")
        fraction = DEFAULTS["min_coverage"] if fraction is None else fraction
        return max(math.ceil(fraction * len(set(self.subjects)) - 1e-9), 1)

    @property
    def permutations(self):
        return self.options["correction"] in PERMUTATION_CORRECTIONS

    @property
    def height_control(self):
        return height_control(self.options)

    def to_json(self):
        """The plan as strict JSON (a list of numbers or labels on one line)."""
        return _dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        if data.get("version") != PLAN_VERSION:
            raise bad_input("plan", f"version {data.get('version')} is not "
                            f"{PLAN_VERSION}, this package's")
        data["design"] = Design(**data["design"])
        data["contrasts"] = [
            Contrast(**{**c, "permutations": c["permutations"] and Permutations(
                **c["permutations"])}) for c in data["contrasts"]]
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def call_text(function, *args, **kwargs):
    """``function(arg, key=value, ...)`` as Python source (provenance)."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{function}({', '.join(parts)})"


def planner_call(function, parallel, **options):
    """:func:`call_text` of a plan function given ``options``, and ``parallel`` when it is
    not 1 (it sets the chunks the plan decides)."""
    return call_text(function, **options, **({"parallel": parallel} if parallel != 1 else {}))


def plan_analysis(inputs_table=None, rows=None, *, parallel=1, **options):
    """The plan of a group analysis (the options of ``nipype-secondlevel run``).

    Parameters
    ----------
    inputs_table : path or None
        The inputs table (``--inputs``), read here once.
    rows : list of dict or None
        Instead, the labels (subject, and condition or group) of every row, in order,
        when the maps come at run time through the analysis workflow's
        ``inputs_table`` input (e.g. from a first-level workflow).
    options
        Any option of ``run`` by its name in :mod:`nipype_secondlevel.spec` (e.g.
        ``design="paired"``, ``conditions=["faces", "houses"]``, ``contrasts=[...]``,
        ``correction="maxT"``); the others take their defaults.
    parallel : int
        The most permutation chunks run at once (e.g. MultiProc's processes): without
        ``n_chunks``, a test is split into at most that many, each worth its start
        (:func:`~nipype_secondlevel.stats.permutation.worthwhile_chunks`).

    Returns
    -------
    Plan
    """
    if (inputs_table is None) == (rows is None):
        raise bad_input("plan_analysis", "give inputs_table or rows (one of them)")
    given = {"inputs_table": inputs_table, **options}
    values = resolve({k: v for k, v in given.items() if v is not None}, "run")
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in given.items()
             if v is not None}
    return make_plan(values, "run", rows=rows, source="table" if rows is None else "runtime",
                     made_by=planner_call("plan_analysis", parallel, **shown),
                     parallel=parallel)


def make_plan(values, command, rows=None, source="table", grid=None, made_by="",
              parallel=1):
    """The plan from resolved option values (:func:`~nipype_secondlevel.spec.resolve`).

    ``rows``: row labels when the maps come at run time (``source`` names where from),
    else the table ``values["inputs_table"]`` is read. ``grid``: (shape, affine) of
    those maps, to check ``--mask`` against before the run. ``parallel``: see
    :func:`plan_analysis`.
    """
    weighted = values.get("estimation", "ols") != "ols"
    design_kind = values["design"]
    if rows is None:
        table_path = Path(values["inputs_table"]).absolute()
        where = (f"inputs table {table_path}" if not values.get("bids_dir") else
                 f"inputs table built from --bids-dir {values['bids_dir']}")
        for name in ("inputs_table", "design_file", "reference_map"):
            if values.get(name) is not None and not Path(values[name]).is_file():
                raise bad_input(f"{option(name, 'run').switch} {values[name]}",
                                "file not found")
        table = read_inputs_table(table_path, require_condition=design_kind == "paired",
                                  covariates=values.get("covariates") or (),
                                  variances=weighted)
    else:
        where = "the rows of the plan"
        table = pd.DataFrame(rows).assign(path="")
        for column in LABEL_COLUMNS:
            if column in table:
                table[column] = table[column].astype(str)
    built = group_design(
        table, design=design_kind, conditions=values.get("conditions"),
        groups=values.get("groups"), covariates=values.get("covariates") or (),
        center=not values.get("no_center_covariates"),
        design_file=values.get("design_file"),
        blocks=values.get("exchangeability_blocks"), where=where)
    specifications = values.get("contrasts") or built.default_contrasts
    matrix = built.matrix
    design = Design(
        kind=design_kind, columns=[str(c) for c in matrix.columns],
        matrix=matrix.to_numpy(dtype=float).tolist(),
        rows={c: list(built.row_labels[c]) for c in built.row_labels.columns},
        paths=built.paths if rows is None else None,
        variance_paths=built.variance_paths if rows is None else None,
        blocks=list(built.blocks))
    contrasts = [(label, weights.tolist(), kind, str(spec)) for (label, weights, kind), spec
                 in zip(parse_contrasts(specifications, matrix.columns), specifications)]
    return plan_design(values, command, design, contrasts, source=source, grid=grid,
                       made_by=made_by, parallel=parallel)


def plan_design(values, command, design, contrasts, *, source="table", grid=None,
                made_by="", parallel=1):
    """The plan of a design built and contrasts parsed: the maps' headers and ``--mask``
    checked, each contrast's permutation test decided, the options recorded.

    The second half of :func:`make_plan`, for a design made otherwise (e.g. a BIDS Stats
    Model's node). ``contrasts``: (label, weights rows, kind, specification) each;
    ``parallel``: see :func:`plan_analysis`.
    """
    domain = DOMAINS[0]
    n_elements = None  # of the maps, known before the run
    if design.paths is not None:
        domain = plan_domain([*design.paths, *(design.variance_paths or [])])
        check_domain_options(values, domain, design.paths[0])
    if domain != "volume":
        built = check_domain(domain, design.paths, {h: values.get(f"surface_{h}") for h in
                                                    ("left", "right")}, design.variance_paths)
        values = {**values, **NOT_APPLICABLE}
        if values.get("surface_extent") is not None:
            values["surface_extent"] = surface_extent(values["surface_extent"], built)
        n_elements = built.n_elements
    elif values.get("surface_extent") is not None:
        values = {**values, "surface_extent": None}  # volumes: clusters count voxels
    if domain == "volume" and design.paths is not None:
        check_headers(values, design)
        grid = _grid(values.get("reference_map") or design.paths[0])
    if grid is not None:
        check_smoothing(values.get("smoothing_fwhm"), *grid)
        n_elements = math.prod(grid[0])
    if values.get("mask") is not None:
        check_mask(Path(values["mask"]), grid)
    two_sided = not values.get("one_sided")
    planned = [Contrast(label, weights, kind, bool(two_sided and kind == "t"), spec)
               for label, weights, kind, spec in contrasts]
    if values["correction"] in PERMUTATION_CORRECTIONS:
        for contrast in planned:
            contrast.permutations = plan_permutations(values, design, contrast, n_elements,
                                                      parallel)
        if values["n_chunks"] is None:  # the plan's record: the chunks decided
            values = {**values, "n_chunks": max(len(c.permutations.chunks) for c in planned)}
    options = {k: _plain(v) for k, v in result_options(values, command).items()}
    return Plan(options=options, design=design, contrasts=planned, source=source,
                domain=domain, made_by=made_by)


def plan_permutations(values, design, contrast, n_elements=None, parallel=1):
    """The permutation test of one contrast: model, scheme, patterns, chunks, threshold.

    paired: sign flips of each subject's difference; an intercept alone: sign flips of
    the maps (one-sample); anything else: Freedman-Lane on the design (glm). Chunks:
    ``--n-chunks``, else as many as are worth their start, at most ``parallel``, from
    the work of ``n_elements`` per map (None: unknown)."""
    X = design.frame()
    weights = contrast.weights
    blocks = design.blocks or None
    pairs = None
    if design.kind == "paired":
        first, second = paired_rows(X, weights, f"{design.kind} design")
        pairs = [first.tolist(), second.tolist()]
        blocks = None if blocks is None else [blocks[i] for i in first]
        model_name, model = "paired", perm.one_sample_model(first.size)
    else:
        model_name = "one-sample" if design.kind == "one-sample" and len(X.columns) == 1 \
            else "glm"
        try:
            model = perm.linear_model(X.to_numpy(), weights)
        except ValueError as err:
            raise bad_input(f"contrast {contrast.label}", str(err)) from err
    try:
        scheme = perm.choose_scheme(model, values["perm_scheme"], blocks)
    except ValueError as err:
        raise bad_input(f"--perm-scheme {values['perm_scheme']}", str(err)) from err
    patterns = perm.plan_permutations(model.n_subjects, values["n_perm"], scheme,
                                      values["perm_seed"], blocks, model.X)
    tail = "two-sided" if contrast.two_sided else "positive"
    forming = None
    if values["correction"] in CLUSTER_CORRECTIONS:
        p = values["cluster_forming_p"]
        forming = [p, float(cluster_forming_value(p, model.dof, model.statistic, tail))]
    spatial = values["correction"] in (*CLUSTER_CORRECTIONS, "tfce")
    n_chunks = values["n_chunks"] or perm.worthwhile_chunks(
        patterns.n_perm, n_elements, model.n_subjects, spatial, parallel)
    # Cluster and TFCE chunks compute each class of patterns once (stats/permutation/
    # repeats.py): chunks of equal work. Max-T computes every index: chunks of equal length.
    if spatial:
        bounds = balanced_chunk_bounds(patterns, n_chunks,
                                       sign_symmetric(patterns, model.statistic, tail))
    else:
        bounds = perm.chunk_bounds(patterns.n_perm, n_chunks)
    return Permutations(
        model=model_name, scheme=scheme, n_subjects=patterns.n_subjects,
        n_perm=patterns.n_perm, exhaustive=patterns.exhaustive, seed=patterns.seed,
        blocks=None if patterns.blocks is None else list(patterns.blocks),
        keys=None if patterns.keys is None else list(patterns.keys), pairs=pairs,
        chunks=[list(b) for b in bounds],
        tail=tail, cluster_forming=forming)


def check_headers(values, design):
    """Every map the design uses opens as a 3D image of the size its header gives
    (headers and gzip trailers only: the data are read by the nodes)."""
    from ..io.images import check_map_header

    if values.get("reference_map") is not None:
        check_map_header(Path(values["reference_map"]).absolute(), "--reference-map")
    for path in design.paths:
        check_map_header(path, "input map")
    for path in design.variance_paths or []:
        check_map_header(path, "variance map")


def _grid(path):
    import nibabel as nib

    img = nib.load(str(path))
    return img.shape[:3], img.affine


def check_mask(path, grid):
    """``--mask``: a 3D image with voxels, some on the maps' grid (``grid``: shape,
    affine); warns when it is resampled to it."""
    import nibabel as nib
    import numpy as np

    from ..io.errors import InputWarning
    from ..io.images import check_map_header, load_img
    from ..io.masks import resample_mask

    where = f"--mask {path}"
    if not path.is_file():
        raise bad_input(where, "file not found")
    check_map_header(path.absolute(), "--mask")
    img = load_img(path, "--mask")
    if not np.any(np.asanyarray(img.dataobj)):
        raise bad_input(where, "is empty (no non-zero voxel)")
    if grid is None:  # maps of a data source not known yet: the mask node resamples
        return
    shape, affine = grid
    if img.shape[:3] == tuple(shape) and np.allclose(img.affine, affine):
        return
    on_grid = resample_mask(img, nib.Nifti1Image(np.zeros(shape, np.uint8), affine))
    if not np.any(np.asanyarray(on_grid.dataobj)):
        raise bad_input(where, f"has no voxel on the maps' grid ({' x '.join(map(str, shape))}"
                        "): is it in the maps' space?")
    warnings.warn(f"{where} is not on the maps' grid: resampled to it (nearest neighbour)",
                  InputWarning, stacklevel=2)


def _dumps(value, depth=0):
    """JSON indented by structure, every list of plain values on one line."""
    pad = "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {_dumps(v, depth + 1)}" for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [pad + _dumps(v, depth + 1) for v in value]
    else:
        return json.dumps(value, allow_nan=False)
    brackets = "{}" if isinstance(value, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + "  " * depth + brackets[1]


def _plain(value):
    """An option value as JSON: paths absolute, tuples as lists."""
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
