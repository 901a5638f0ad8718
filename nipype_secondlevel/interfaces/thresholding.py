"""Threshold: height (z or p) and cluster-size thresholds, and a cluster table."""

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..io.errors import bad_input
from ..io.files import save_img, save_tsv
from ..io.images import load_img, stat_intent
from ..io.sidecars import (
    generated_by,
    read_sidecar,
    source_fields,
    threshold_fields,
    threshold_title,
    write_sidecar,
)
from ..reporting.clusters import cluster_table
from ..spec import DEFAULTS, HEIGHT_CONTROLS


def threshold_map(z_img, mask_img, height_control, threshold, alpha, cluster_size, two_sided):
    """nilearn's ``threshold_stats_img`` with our option names (``alpha`` None: the z
    ``threshold``, height control "none").

    Returns (thresholded image, z threshold used).
    """
    from nilearn.glm import threshold_stats_img

    level = {"threshold": threshold, "height_control": None} if height_control == "none" else {
        "alpha": alpha, "threshold": None, "height_control": height_control}
    return threshold_stats_img(z_img, mask_img=mask_img, cluster_threshold=cluster_size,
                               two_sided=two_sided, **level)


class _ThresholdInputSpec(BaseInterfaceInputSpec):
    z_map = File(exists=True, mandatory=True, desc="z map to threshold")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    height_control = traits.Enum(
        *HEIGHT_CONTROLS,
        usedefault=True,
        desc="none: |z| > threshold; fpr: uncorrected p < alpha; "
        "fdr: Benjamini-Hochberg q < alpha; bonferroni: FWER p < alpha",
    )
    threshold = traits.Float(DEFAULTS["threshold"], usedefault=True,
                             desc="z threshold (height_control none)")
    alpha = traits.Range(low=0.0, high=1.0, exclude_low=True,
                         desc="p level for fpr, fdr and bonferroni (required with them)")
    cluster_size = traits.Int(
        DEFAULTS["cluster_size"], usedefault=True,
        desc="minimum cluster size in voxels (0: no minimum)")
    two_sided = traits.Bool(
        True, usedefault=True, desc="threshold both signs (else positive only)"
    )
    contrast_name = traits.Str("contrast", usedefault=True,
                               desc="the contrast's label (titles, sidecars)")


class _ThresholdOutputSpec(TraitedSpec):
    thresholded_map = File(exists=True, desc="z map, zero below the thresholds")
    cluster_table = File(exists=True, desc="clusters, peaks and sub-peaks (TSV, MNI mm)")
    z_threshold = traits.Float(desc="height threshold applied, in z")
    plot_title = traits.Str(desc="figure title naming the threshold and its correction")


class Threshold(SimpleInterface):
    """Threshold a z map (height and cluster extent) and tabulate its clusters."""

    input_spec = _ThresholdInputSpec
    output_spec = _ThresholdOutputSpec

    def _run_interface(self, runtime):
        z_img = load_img(self.inputs.z_map, "z map")
        mask_img = load_img(self.inputs.mask_file, "mask")
        alpha = self.inputs.alpha if isdefined(self.inputs.alpha) else None
        if alpha is None and self.inputs.height_control != "none":
            raise bad_input("alpha", f"is required with height control "
                            f"{self.inputs.height_control}")
        thresholded, z_threshold = threshold_map(
            z_img, mask_img, self.inputs.height_control, self.inputs.threshold,
            alpha, self.inputs.cluster_size, self.inputs.two_sided,
        )
        table = cluster_table(
            thresholded, z_threshold, self.inputs.cluster_size, self.inputs.two_sided
        )
        label = self.inputs.contrast_name
        out = Path(runtime.cwd)
        self._results["thresholded_map"] = save_img(stat_intent(thresholded, "z"),
                                                     out / "thresholded.nii.gz")
        self._results["cluster_table"] = save_tsv(table, out / "clusters.tsv")
        self._results["z_threshold"] = float(z_threshold)
        self._results["plot_title"] = threshold_title(
            label, self.inputs.height_control, z_threshold, alpha, self.inputs.two_sided)
        # The z map's sidecar (contrast, weights, dof) carries over to the thresholded map.
        fields = {k: v for k, v in read_sidecar(self.inputs.z_map).items()
                  if k not in ("Description", "Sources", "SourceFiles", "GeneratedBy")}
        fields.update({
            "Contrast": fields.get("Contrast", label),
            "Statistic": "z",
            "Description": "z map, zero below the threshold",
            "Threshold": threshold_fields(
                self.inputs.height_control, z_threshold, alpha,
                self.inputs.threshold, self.inputs.cluster_size, self.inputs.two_sided,
            ),
            **source_fields([self.inputs.z_map, self.inputs.mask_file]),
            "GeneratedBy": generated_by("threshold"),
        })
        write_sidecar(self._results["thresholded_map"], fields)
        return runtime
