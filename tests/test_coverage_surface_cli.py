"""Per-vertex coverage on surfaces, through the command line (a tiny mesh): vertices NaN
(or 0, with --zeros-without-variance) in some subjects' GIFTI maps are analysed with the
subjects present there (scipy's one-sample t on them), the count map is written as a GIFTI
pair, and vertices with too few subjects leave the mask. (CIFTI's coverage is checked by
test_surface_wiring.py's CIFTI run.)"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from surface_data import planar_mesh, write_pair
from test_surface_wiring import surface_map, write_surface

from nipype_secondlevel.cli import main

N_SUBJECTS, SIDE = 6, 6


def absent(n_elements):
    """(n_subjects, n_elements) bool: True where the subject's value is missing."""
    gone = np.zeros((N_SUBJECTS, n_elements), dtype=bool)
    gone[0, :10] = True  # a dropout
    gone[1, 5:15] = True
    gone[2, -8:] = True  # written 0: missing with --zeros-without-variance
    gone[[0, 1, 3], 20:23] = True  # three subjects left: out with --min-subjects 4
    return gone


def run(folder, paths, *options):
    table = folder / "inputs.tsv"
    pd.DataFrame({"subject": [f"s{i}" for i in range(len(paths))],
                  "path": [str(p) for p in paths]}).to_csv(table, sep="\t", index=False)
    with pytest.warns(UserWarning, match="3 element"):
        assert main(["run", "--inputs", str(table), "--out-dir", str(folder / "out"),
                     "--work-dir", str(folder / "work"), "--quiet", "--min-subjects", "4",
                     "--zeros-without-variance", "--plugin", "Linear", *options]) == 0


def written(maps, gone):
    """The maps as the first levels write them: NaN, or 0 for subject 2."""
    fill = np.where(np.arange(N_SUBJECTS) == 2, 0.0, np.nan)[:, None]
    return np.where(gone, fill, maps)


def check(count, t, maps, gone):
    present = ~gone
    n = present.sum(axis=0)
    analysed = n >= 4
    np.testing.assert_array_equal(count, np.where(analysed, n, 0))
    expected = [stats.ttest_1samp(maps[present[:, v], v], 0.0).statistic
                for v in np.flatnonzero(analysed)]
    np.testing.assert_allclose(t[analysed], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(t[~analysed], 0.0)
    assert (~analysed).sum() == 3 and (n[analysed] < N_SUBJECTS).sum() > 20


def test_gifti_vertices_are_analysed_with_the_subjects_present(tmp_path):
    xy, faces = planar_mesh(SIDE, SIDE)
    surfaces = [write_surface(tmp_path / f"{h}.surf.gii", xy, faces) for h in ("left", "right")]
    n = len(xy)
    maps = np.random.default_rng(8).normal(0.4, 1.0, (N_SUBJECTS, 2 * n)).astype(np.float32)
    gone = absent(2 * n)
    values = written(maps, gone)
    pairs = [write_pair(tmp_path, f"{i:02d}", y[:n], y[n:], space="tiny")
             for i, y in enumerate(values)]
    run(tmp_path, [left for left, _ in pairs], "--surface-left", str(surfaces[0]),
        "--surface-right", str(surfaces[1]))
    count = surface_map(tmp_path, "stat-n_desc-coverage_statmap")
    check(count, surface_map(tmp_path, "contrast-intercept_stat-t_statmap"),
          maps.astype(float), gone)
