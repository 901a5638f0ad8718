"""Simulate: the built-in localizer-like dataset (no network needed)."""

from pathlib import Path

import nibabel as nib
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..datasets.simulation import localizer_brain_mask, simulate_paired_sample, simulation_rows
from ..io.errors import bad_input
from ..io.files import save_img, save_tsv
from ..io.sidecars import generated_by, write_sidecar
from ..spec import DEFAULTS


class _SimulatePairedInputSpec(BaseInterfaceInputSpec):
    n_subjects = traits.Int(DEFAULTS["n_subjects"], usedefault=True,
                            desc="number of subjects (>= 2)")
    seed = traits.Int(DEFAULTS["seed"], usedefault=True, desc="seed of the random generator")
    conditions = traits.List(
        traits.Str,
        value=["vertical", "horizontal"],
        usedefault=True,
        minlen=2,
        maxlen=2,
        desc="names of the two conditions; the effect is in the first",
    )
    effect_amplitude = traits.Float(
        2.0, usedefault=True, desc="peak of the paired effect (noise SD is 1 per map)"
    )


class _SimulatePairedOutputSpec(TraitedSpec):
    inputs_table = File(exists=True, desc="TSV with subject, condition, path")
    maps = traits.List(File(exists=True), desc="the simulated maps")
    truth_mask = File(
        exists=True, desc="ground truth: +1 positive effect, -1 negative, 0 none"
    )
    brain_mask = File(exists=True, desc="brain mask the maps were simulated in")


class SimulatePaired(SimpleInterface):
    """Write a seeded, deterministic localizer-like paired sample.

    Maps are on the Brainomics/Localizer 3 mm MNI grid (53 x 63 x 46) inside
    nilearn's MNI152 brain mask, with smooth noise, per-subject offsets and a
    known paired effect (one positive, one negative blob in V1).
    """

    input_spec = _SimulatePairedInputSpec
    output_spec = _SimulatePairedOutputSpec
    #: numpy, scipy.ndimage and nibabel only: MultiProc runs it as its first node before
    #: its scheduler imports nilearn (``runtime.workers``).
    imports_nilearn = False

    def _run_interface(self, runtime):
        n = self.inputs.n_subjects
        if n < 2:
            raise bad_input("n_subjects", f"must be at least 2, got {n}")
        out = Path(runtime.cwd)
        mask, affine = localizer_brain_mask()
        maps, truth = simulate_paired_sample(
            mask, affine, n, self.inputs.seed, self.inputs.effect_amplitude
        )
        rows = simulation_rows(n, self.inputs.conditions)
        for i, row in enumerate(rows):  # subject i // 2, condition i % 2
            row["path"] = save_img(
                nib.Nifti1Image(maps[i // 2, i % 2], affine),
                out / f"sub-{row['subject']}_cond-{row['condition']}_effect.nii.gz",
            )
        table = pd.DataFrame(rows)
        self._results["inputs_table"] = save_tsv(table, out / "inputs.tsv")
        self._results["maps"] = list(table["path"])
        self._results["truth_mask"] = save_img(
            nib.Nifti1Image(truth, affine), out / "truth_mask.nii.gz"
        )
        write_sidecar(self._results["truth_mask"], {
            "Description": "ground truth of the simulation: +1 where the first condition "
            "has the positive effect, -1 the negative one, 0 no effect",
            "Conditions": list(self.inputs.conditions),
            "NSubjects": n,
            "Seed": self.inputs.seed,
            "EffectAmplitude": self.inputs.effect_amplitude,
            "GeneratedBy": generated_by("simulate"),
        })
        self._results["brain_mask"] = save_img(
            nib.Nifti1Image(mask.astype("uint8"), affine), out / "brain_mask.nii.gz"
        )
        return runtime
