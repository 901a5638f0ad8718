"""JSON sidecars of output maps (BIDS derivatives style), written in one place.

Every map written (statistical maps, masks, variance maps) gets a ``.json`` file beside it with the same base name
(``contrast-X_stat-z_statmap.nii.gz`` -> ``contrast-X_stat-z_statmap.json``)
that says what the map is: contrast, statistic, degrees of freedom, threshold
and correction, and the files it was computed from. The interfaces that write
maps call :func:`write_sidecar`; the sink exports a file's sidecar with it; the
report reads them back with :func:`read_sidecar`.
"""

import json
import math
from pathlib import Path

from ..spec import DEFAULTS
from .files import write_json

#: File name endings replaced by ``.json`` (longest first).
_MAP_SUFFIXES = (".dscalar.nii", ".func.gii", ".nii.gz", ".nii", ".tsv", ".png", ".svg")

HEIGHT_CONTROL_NAMES = {
    "none": "uncorrected",
    "fpr": "uncorrected",
    "fdr": "FDR (Benjamini-Hochberg)",
    "bonferroni": "FWER (Bonferroni)",
}


def sidecar_path(path):
    """The sidecar of ``path``: same folder and base name, ``.json``."""
    path = Path(path)
    name = path.name
    for suffix in _MAP_SUFFIXES:
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(path.stem + ".json")


def write_sidecar(path, fields):
    """Write ``fields`` (JSON-serializable dict) as the sidecar of ``path``, atomically
    (strict JSON: :func:`~nipype_secondlevel.io.files.write_json`).

    Returns the sidecar path as str.
    """
    return write_json(sidecar_path(path), fields)


def read_sidecar(path):
    """The sidecar fields of ``path`` as a dict ({} when it has none)."""
    target = sidecar_path(path)
    if not target.exists():
        return {}
    return json.loads(target.read_text())


#: Sidecar fields saying how the input maps were prepared (--smoothing-fwhm, --mask),
#: written by the contrast and carried over to every map made from it.
PREPARATION_FIELDS = ("SmoothingFWHM", "MaskFile")


def preparation_fields(path):
    """The :data:`PREPARATION_FIELDS` of the sidecar of ``path`` (those it has)."""
    meta = read_sidecar(path)
    return {k: meta[k] for k in PREPARATION_FIELDS if k in meta}


def generated_by(step):
    """BIDS-style ``GeneratedBy`` entry naming this package and the workflow step."""
    from .. import __version__

    return [{"Name": "nipype-secondlevel", "Version": __version__, "Step": step}]


def source_fields(paths):
    """``Sources`` (base names) and ``SourceFiles`` (absolute paths) of a sidecar."""
    return {"Sources": [Path(f).name for f in paths],
            "SourceFiles": [str(Path(f).absolute()) for f in paths]}


def describe_threshold(height_control, z_threshold, alpha=None, threshold=None,
                       cluster_size=DEFAULTS["cluster_size"], two_sided=True):
    """One sentence stating the threshold and the correction, e.g. for a report.

    >>> describe_threshold("fdr", 3.52, alpha=0.05)
    'FDR (Benjamini-Hochberg) q < 0.05, i.e. |z| > 3.52 (two-sided)'
    """
    sign = "|z|" if two_sided else "z"
    if not math.isfinite(z_threshold):  # e.g. FDR when no voxel can pass
        bound = f"no voxel passes ({sign} > inf)"
        text = (f"{HEIGHT_CONTROL_NAMES[height_control]} "
                f"{'q' if height_control == 'fdr' else 'p'} < {alpha:g}, {bound}")
    elif height_control == "none":
        text = f"uncorrected, {sign} > {z_threshold:.2f}"
    elif height_control == "fdr":
        text = f"{HEIGHT_CONTROL_NAMES['fdr']} q < {alpha:g}, i.e. {sign} > {z_threshold:.2f}"
    else:
        text = (f"{HEIGHT_CONTROL_NAMES[height_control]} p < {alpha:g}, "
                f"i.e. {sign} > {z_threshold:.2f}")
    text += " (two-sided)" if two_sided else " (one-sided, positive values)"
    if cluster_size:
        text += f", clusters of at least {cluster_size} voxels"
    return text


def threshold_title(label, height_control, z_threshold, alpha=None, two_sided=True):
    """A figure title naming the threshold and its correction, shorter than the sentence.

    >>> threshold_title("mean", "bonferroni", 4.91, alpha=0.05)
    'mean: Bonferroni FWE p < 0.05 (|z| > 4.91)'
    """
    sign = "|z|" if two_sided else "z"
    bound = f"{sign} > {z_threshold:.2f}" if math.isfinite(z_threshold) else "no voxel passes"
    if height_control == "none":
        return f"{label}: {bound}, uncorrected"
    level = {"fpr": "p", "fdr": "FDR q", "bonferroni": "Bonferroni FWE p"}[height_control]
    text = f"{label}: {level} < {alpha:g}"
    return f"{text} uncorrected ({bound})" if height_control == "fpr" else f"{text} ({bound})"


def threshold_fields(height_control, z_threshold, alpha, threshold, cluster_size, two_sided):
    """The ``Threshold`` entry of a thresholded map's sidecar."""
    return {
        "Statistic": "z",
        "Value": float(z_threshold) if math.isfinite(z_threshold) else None,
        "HeightControl": height_control,
        "Correction": HEIGHT_CONTROL_NAMES[height_control],
        "Alpha": None if height_control == "none" else float(alpha),
        "RequestedZ": float(threshold) if height_control == "none" else None,
        "ClusterSizeVoxels": int(cluster_size),
        "TwoSided": bool(two_sided),
        "Description": describe_threshold(
            height_control, z_threshold, alpha, threshold, cluster_size, two_sided
        ),
    }


#: Permutation corrections: (name in sentences, name of the FWER correction).
PERMUTATION_METHODS = {
    "maxT": ("max-{stat}", "FWER (max-{stat} permutation)"),
    "cluster-size": ("cluster-size", "FWER (cluster-size permutation)"),
    "cluster-mass": ("cluster-mass", "FWER (cluster-mass permutation)"),
    "tfce": ("TFCE", "FWER (TFCE permutation)"),
}

#: How a cluster's extent (cluster-size, TFCE) is measured on a mesh (--surface-extent).
EXTENTS = {
    "area": {"Unit": "mm2", "Description": "the sum of its vertex areas, a third of the area "
             "of each triangle of the mesh a vertex belongs to (PALM -s)"},
    "vertices": {"Unit": "elements", "Description": "its number of vertices (and voxels)"},
}


def _permutations_text(n_perm, exhaustive, seed, scheme):
    patterns = "sign flips" if scheme == "sign-flip" else "permutations"
    how = f"exhaustive {patterns}" if exhaustive else f"random {patterns}, seed {seed}"
    return f"{n_perm:,} permutations ({how})"


def permutation_fields(method, statistic, n_perm, exhaustive, seed, scheme, n_blocks,
                       tail, cluster_forming=None, tfce=None, extent=None):
    """The ``Correction`` entry of a permutation map's sidecar.

    ``method`` is a correction of :data:`PERMUTATION_METHODS` or "uncorrected";
    ``cluster_forming`` is ``(p, statistic value)`` for cluster methods and
    ``tfce`` is ``(E, H)`` for TFCE; ``n_blocks`` is None without blocks;
    ``extent`` ("area", "vertices") how clusters are measured on a mesh
    (:data:`EXTENTS`; None on volumes, where voxels are counted).
    """
    fields = {
        "Method": method,
        "Statistic": statistic,
        "NPermutations": int(n_perm),
        "Exhaustive": bool(exhaustive),
        "Seed": None if exhaustive else int(seed),
        "Scheme": scheme,
        "ExchangeabilityBlocks": None if n_blocks is None else int(n_blocks),
        "Tail": tail,
    }
    if cluster_forming is not None:
        fields["ClusterFormingThreshold"] = {"p": float(cluster_forming[0]),
                                             "Value": float(cluster_forming[1]),
                                             "Statistic": "t" if statistic == "t" else "z"}
    if tfce is not None:
        fields["TFCE"] = {"E": float(tfce[0]), "H": float(tfce[1])}
    if extent is not None:
        fields["Extent"] = {"Measure": extent, **EXTENTS[extent]}
    return fields


def acceleration_fields(method, fit):
    """The ``Acceleration`` entry of a family-wise p map's ``Correction`` (nothing with
    ``--accel none`` or for a map no fit applies to, such as the uncorrected p):
    the method, whether it fell back to the permutation p values, where the map's p
    values come from (the fit, the permutations beyond it, or the permutations: no
    accepted fit) and the fit with its counts
    (:func:`~nipype_secondlevel.stats.permutation.accelerated_fwer`'s record)."""
    if method == "none" or fit is None:
        return {}
    top = ("FellBack", "PValues")
    return {"Acceleration": {"Method": method, **{k: fit[k] for k in top},
                             "Fit": {k: v for k, v in fit.items()
                                     if k not in ("Method", *top)}}}


def describe_permutation_threshold(method, alpha, correction):
    """One sentence for a permutation-corrected map, from its ``Correction`` entry.

    >>> describe_permutation_threshold("cluster-size", 0.05, permutation_fields(
    ...     "cluster-size", "t", 10000, False, 0, "permute", None, "two-sided", (0.001, 3.73)))
    'cluster-size FWE p < 0.05, 10,000 permutations (random permutations, seed 0), cluster-forming p < 0.001 (|t| > 3.73)'
    """
    name = PERMUTATION_METHODS[method][0].format(stat=correction["Statistic"])
    text = f"{name} FWE p < {alpha:g}, " + _permutations_text(
        correction["NPermutations"], correction["Exhaustive"], correction["Seed"],
        correction["Scheme"])
    forming = correction.get("ClusterFormingThreshold")
    if forming:
        value = forming["Statistic"]
        if correction["Tail"] == "two-sided":
            value = f"|{value}|"
        text += f", cluster-forming p < {forming['p']:g} ({value} > {forming['Value']:.2f})"
    extent = correction.get("Extent")
    if extent:
        text += f", cluster extent in {extent['Unit']} ({extent['Description']})"
    return text


def permutation_title(label, method, alpha, correction):
    """A figure title, e.g. ``"mean: cluster-size FWE p < 0.05 (10,000 permutations)"``."""
    name = PERMUTATION_METHODS[method][0].format(stat=correction["Statistic"])
    return (f"{label}: {name} FWE p < {alpha:g} "
            f"({correction['NPermutations']:,} permutations)")


def permutation_threshold_fields(method, alpha, z_threshold, correction):
    """The ``Threshold`` entry of a permutation-corrected map (keys of :func:`threshold_fields`)."""
    return {
        "Statistic": "z",
        "Value": float(z_threshold) if math.isfinite(z_threshold) else None,
        "HeightControl": "permutation",
        "Correction": PERMUTATION_METHODS[method][1].format(stat=correction["Statistic"]),
        "Alpha": float(alpha),
        "RequestedZ": None,
        "ClusterSizeVoxels": 0,
        "TwoSided": correction["Tail"] == "two-sided",
        "Description": describe_permutation_threshold(method, alpha, correction),
    }
