"""Maps that viewers (FSLeyes, AFNI, Mango) show as statistics: NIfTI intent codes with their
degrees of freedom, and the inputs' spatial units kept, through the command line."""

import nibabel as nib
import numpy as np
import pandas as pd
from group_data import make_group_table

from nipype_secondlevel.cli import main


def test_t_f_z_p_maps_carry_their_intent_and_the_inputs_units(tmp_path):
    table = make_group_table(tmp_path / "data", n_subjects=8, conditions=("faces",))
    rows = pd.read_csv(table, sep="\t")
    for path in rows["path"]:  # first-level maps saying mm and seconds, as FSL and SPM write
        img = nib.load(tmp_path / "data" / path)
        img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine)
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, tmp_path / "data" / path)
    out = tmp_path / "results"
    assert main(["run", "--inputs", str(table), "--design", "two-sample",
                 "--covariates", "age", "--contrast", "patients - controls",
                 "--contrast", "both=patients - controls; age",
                 "--correction", "maxT", "--n-perm", "50", "--quiet",
                 "--out-dir", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    # The design's residual degrees of freedom, independently: n - rank([groups, age]).
    X = np.column_stack([rows["group"] == "controls", rows["group"] == "patients",
                         rows["age"] - rows["age"].mean()]).astype(float)
    dof = len(X) - np.linalg.matrix_rank(X)

    def header(name):
        return nib.load(out / f"{name}.nii.gz").header

    t = header("contrast-patientsMinusControls_stat-t_statmap")
    assert t.get_intent()[:2] == ("t test", (float(dof),))
    f = header("contrast-both_stat-F_statmap")
    assert f.get_intent()[:2] == ("f test", (2.0, float(dof)))
    for name in ("contrast-patientsMinusControls_stat-z_statmap",
                 "contrast-patientsMinusControls_stat-z_desc-thresholded_statmap",
                 "contrast-patientsMinusControls_stat-z_desc-maxTcorrected_statmap",
                 "contrast-both_stat-z_statmap"):
        assert header(name).get_intent()[0] == "z score", name
    assert header("contrast-both_stat-p_statmap").get_intent()[0] == "p value"
    assert header("contrast-patientsMinusControls_stat-effect_statmap").get_intent()[0] == "none"
    for path in out.glob("*.nii.gz"):
        assert nib.load(path).header.get_xyzt_units() == ("mm", "sec"), path.name
