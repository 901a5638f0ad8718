"""The plain-nilearn surface reference (what the wiring wave compares the command with)
is itself right: equal to scipy's one-sample t test on the GIFTI data, as z."""

import numpy as np
from scipy import stats
from surface_data import smooth_sample, write_pair
from surface_reference import nilearn_one_sample_z

from nipype_secondlevel.io import surfaces


def test_nilearns_one_sample_z_on_fsaverage5_equals_scipys_t_test(tmp_path):
    domain = surfaces.SurfaceDomain.fsaverage5()
    maps = smooth_sample(domain.coordinates(), 8, seed=2, effect=1.0, centre=500)
    pairs = [write_pair(tmp_path, f"{i:02d}", m[:10242], m[10242:]) for i, m in enumerate(maps)]
    mask = domain.support()
    z = nilearn_one_sample_z(pairs, mask)
    data = np.stack([domain.read(pair) for pair in pairs])[:, mask]
    t = stats.ttest_1samp(data, 0.0).statistic
    expected = stats.norm.isf(stats.t.sf(t, len(maps) - 1))
    np.testing.assert_allclose(z[mask], expected, atol=1e-5)
    assert (z[~mask] == 0).all() and np.abs(expected).max() > 3
