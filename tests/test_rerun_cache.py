"""The cache of a rerun (issue 24's warm rerun): what changed runs again, whatever it costs."""

import nibabel as nib
import numpy as np
import pandas as pd
from group_data import make_group_table, write_map

from nipype_secondlevel.cli import main


def test_a_map_rewritten_in_place_is_read_again_by_the_rerun(tmp_path):
    """Same command, same paths, one input map's values changed: the rerun's effect map is
    the mean of the maps as they are now (numpy), not the cached one."""
    table = make_group_table(tmp_path / "data", n_subjects=5, conditions=("a",))
    command = ["run", "--inputs", str(table), "--design", "one-sample", "--out-dir",
               str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
               "--mask-strategy", "coverage", "--quiet"]
    paths = [table.parent / p for p in pd.read_csv(table, sep="\t")["path"]]
    effect_file = tmp_path / "out" / "contrast-intercept_stat-effect_statmap.nii.gz"
    means = []
    for shift in (0.0, 2.5):
        data = nib.load(paths[0]).get_fdata()
        write_map(paths[0], np.where(data != 0, data + shift, 0.0))
        assert main(command) == 0
        effect = nib.load(effect_file).get_fdata()
        inside = effect != 0
        maps = np.stack([nib.load(p).get_fdata() for p in paths])
        np.testing.assert_allclose(effect[inside], maps.mean(0)[inside], atol=1e-5)
        means.append(effect[inside].mean())
    np.testing.assert_allclose(means[1] - means[0], 2.5 / len(paths), rtol=1e-4)
