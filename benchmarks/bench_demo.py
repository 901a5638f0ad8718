"""Wall time of the demo: cold workflow run, warm (cached) rerun, plain nilearn script.

Each is a whole new process (imports included), in one run on one machine, on the
same simulated data. Prints seconds and ratios:

    python benchmarks/bench_demo.py [--repeats 3] [--plugin Linear]

Targets: cold <= 2x plain nilearn; warm <= 0.5x cold.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from timing import timed_command

# The same job written as a plain nilearn script: simulate the same data, fit,
# write the five maps, threshold, tabulate clusters, draw the design and glass brain.
PLAIN_NILEARN = r'''
import sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.glm import threshold_stats_img
from nilearn.glm.second_level import SecondLevelModel
from nilearn.plotting import plot_design_matrix, plot_glass_brain
from nilearn.reporting import get_clusters_table
from nipype_secondlevel.datasets.simulation import localizer_brain_mask, simulate_paired_sample

out = Path(sys.argv[1]); out.mkdir(parents=True)
mask, affine = localizer_brain_mask()
maps, truth = simulate_paired_sample(mask, affine, 16, 0)
paths = {}
for s in range(16):
    for c, cond in enumerate(["vertical", "horizontal"]):
        p = out / f"sub-S{s+1:02d}_{cond}.nii.gz"
        nib.save(nib.Nifti1Image(maps[s, c], affine), p)
        paths[s, c] = str(p)
n = 16
design = pd.DataFrame(np.column_stack([np.r_[np.ones(n), np.zeros(n)],
                                       np.vstack([np.eye(n)] * 2)]),
                      columns=["vertical_vs_horizontal"] + [f"S{i:02d}" for i in range(1, 17)])
inputs = [paths[s, 0] for s in range(n)] + [paths[s, 1] for s in range(n)]
model = SecondLevelModel().fit(inputs, design_matrix=design)
maps_out = model.compute_contrast("vertical_vs_horizontal", output_type="all")
for key, img in maps_out.items():
    nib.save(img, out / f"{key}.nii.gz")
design.to_csv(out / "design.tsv", sep="\t", index=False)
ax = plot_design_matrix(design)
ax.figure.savefig(out / "design.png"); plt.close("all")
thresholded, thr = threshold_stats_img(maps_out["z_score"], threshold=3.1,
                                       height_control=None, two_sided=True)
nib.save(thresholded, out / "thresholded.nii.gz")
get_clusters_table(thresholded, thr, two_sided=True).to_csv(out / "clusters.tsv", sep="\t")
display = plot_glass_brain(thresholded, threshold=thr, colorbar=True, plot_abs=False)
display.savefig(out / "glass_brain.png"); display.close()
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plugin", default="Linear", choices=["Linear", "MultiProc"])
    args = parser.parse_args()
    cold, warm, plain = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        script = tmp / "plain_nilearn.py"
        script.write_text(PLAIN_NILEARN)
        for i in range(args.repeats):
            cli = [sys.executable, "-m", "nipype_secondlevel", "demo", "--quiet",
                   "--plugin", args.plugin, "--out-dir", str(tmp / f"out{i}"),
                   "--work-dir", str(tmp / f"work{i}")]
            plain.append(timed_command([sys.executable, str(script), str(tmp / f"plain{i}")]))
            cold.append(timed_command(cli))
            warm.append(timed_command(cli))
    p, c, w = (statistics.median(x) for x in (plain, cold, warm))
    print(f"demo, 16 subjects, plugin {args.plugin}, median of {args.repeats} "
          f"(whole processes, imports included)")
    print(f"  plain nilearn script : {p:6.2f} s")
    print(f"  workflow, cold       : {c:6.2f} s   cold / nilearn = {c / p:.2f}  (target <= 2)")
    print(f"  workflow, warm       : {w:6.2f} s   warm / cold    = {w / c:.2f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
