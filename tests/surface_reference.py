"""Plain-nilearn reference of a one-sample OLS test on fsaverage5 GIFTI pairs.

What a nilearn user writes: every subject's pair loaded as a ``SurfaceImage`` on
nilearn's fsaverage5, ``SecondLevelModel`` (optionally within a mask) with an intercept
design, the intercept's z map. The surface wiring tests compare the command's z maps
with it (nilearn has no cluster or TFCE inference on surfaces to compare with).
"""

import numpy as np
import pandas as pd


def nilearn_one_sample_z(pairs, mask=None):
    """z map (n_left + n_right,) of the intercept of ``pairs`` [(left, right) GIFTI paths].

    ``mask`` : boolean (n_left + n_right,) or None (nilearn's default mask).
    Returns 0 outside the mask, as the package's maps.
    """
    from nilearn.datasets import load_fsaverage
    from nilearn.glm.second_level import SecondLevelModel
    from nilearn.surface import SurfaceImage

    mesh = load_fsaverage("fsaverage5")["pial"]
    images = [SurfaceImage(mesh=mesh, data={"left": str(left), "right": str(right)})
              for left, right in pairs]
    mask_img = None
    if mask is not None:
        n_left = mesh.parts["left"].n_vertices
        mask_img = SurfaceImage(mesh=mesh, data={"left": mask[:n_left].astype(np.int8),
                                                 "right": mask[n_left:].astype(np.int8)})
    design = pd.DataFrame({"intercept": np.ones(len(images))})
    model = SecondLevelModel(mask_img=mask_img).fit(images, design_matrix=design)
    z = model.compute_contrast("intercept", output_type="z_score")
    return np.concatenate([np.asarray(z.data.parts[h]).ravel() for h in ("left", "right")])
