"""A damaged cache heals on the next run: the node whose result or files were damaged
runs again, so do the nodes reading what it rewrites, and the outputs equal a clean run's.

A node folder that is a symbolic link leading out of the work folder stops the run
before anything is written through it.

One demo run is damaged in turn in each way (a result file cut short or deleted, an
intermediate file deleted as a scratch purge would, ``masked_data.npy`` cut short or
rewritten, a simulated map deleted) and rerun through the command each time; the
reference is that run's own outputs before any damage (a copy).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
from nipype.pipeline.engine.utils import load_resultfile
from test_interruption import DEMO as CLEAN_DEMO
from test_interruption import ENV, assert_same_outputs, cli

DEMO = ["demo", "--n-subjects", "4", "--out-dir", "out", "--work-dir", "work"]
ANALYSIS = Path("work/demo_wf/group_analysis_wf")


def run_demo(folder):
    done = subprocess.run(cli(*DEMO), cwd=folder, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stderr


def cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite_values(path):
    """Same size, same header, other values (e.g. a file restored from another run)."""
    data = np.load(path)
    np.save(path, data[::-1].copy())


def first(folder, pattern):
    return min(Path(folder).glob(pattern))


#: Rounds of damages, each then one rerun (damages of one round hit different nodes):
#: (what, file to damage (relative to the run's folder), damage, node seen to run again)
ROUNDS = [
    [("result file cut short", ANALYSIS / "estimate/result_estimate.pklz", cut_short,
      "estimate"),
     ("contrast map deleted", ANALYSIS / "contrast/mapflow/_contrast0/z.nii.gz",
      Path.unlink, "contrast"),
     ("masked data rewritten", ANALYSIS / "stack_masked_data/masked_data.npy", rewrite_values,
      "stack_masked_data")],
    [("result file deleted", ANALYSIS / "mask/result_mask.pklz", Path.unlink, "mask"),
     ("masked data deleted", ANALYSIS / "stack_masked_data/masked_data.npy", Path.unlink,
      "stack_masked_data")],
    [("simulated map deleted", "work/demo_wf/simulate/*_effect.nii.gz", Path.unlink,
      "simulate"),
     ("masked data cut short", ANALYSIS / "stack_masked_data/masked_data.npy", cut_short,
      "stack_masked_data")],
]


def test_each_damage_heals_on_the_next_run(tmp_path):
    run_demo(tmp_path)
    clean = tmp_path / "clean"  # the outputs of this first run, before any damage
    shutil.copytree(tmp_path / "out", clean / "out")
    for damages in ROUNDS:
        before = {}
        for what, target, damage, _ in damages:
            path = first(tmp_path, str(target))
            before[what] = path, path.read_bytes()
            damage(path)
        log = run_demo(tmp_path)
        for what, _, _, node in damages:
            if what != "result file deleted":  # (nipype runs a node without a result anyway)
                assert f".{node}: cached result not used (" in log, (what, log)
            assert f".{node}: done in" in log, what
            path, content = before[what]
            if path.suffix == ".pklz":  # a new result (its run time differs), whole
                assert load_resultfile(str(path)).outputs is not None, what
            else:  # the work folder holds the same file again
                assert path.read_bytes() == content, what
        assert_same_outputs(tmp_path / "out", clean / "out", tmp_path, tmp_path)


def test_a_node_folder_linked_out_of_the_work_folder_is_refused(tmp_path, clean_demo):
    """(the work folder of test_interruption.py's clean demo run, copied, with one node
    folder replaced by a link to a folder of the user's)"""
    shutil.copytree(clean_demo / "work", tmp_path / "work", symlinks=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine\n")
    mask = tmp_path / ANALYSIS / "mask"
    shutil.rmtree(mask)
    mask.symlink_to(victim)
    done = subprocess.run(cli(*CLEAN_DEMO), cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1
    error = (f"nipype-secondlevel: error: work folder {tmp_path / 'work'}: the folder of node "
             f"demo_wf.group_analysis_wf.mask leads out of it (to {victim}) through a symbolic "
             "link; remove the link")
    assert done.stderr.splitlines() == [error]
    assert [p.name for p in victim.iterdir()] == ["notes.txt"]
