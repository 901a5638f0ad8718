"""The runtime through the command line: any nipype plugin with its arguments, one
line per warning (workers included), --n-procs capped, the locks' refusals."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_interruption import ENV, cli

from nipype_secondlevel.runtime.locking import LOCK_NAME, results_lock_path

SMALL = ["demo", "--n-subjects", "4", "--quiet"]
PREFIX = "nipype-secondlevel: "


def run(args, cwd, env=ENV, timeout=300):
    return subprocess.run(cli(*args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_warnings_are_one_line_each_and_n_procs_is_capped(tmp_path):
    """nilearn's warnings in MultiProc's workers (a threshold no voxel reaches: empty
    figures) and ours: one line each, or none; --n-procs above the CPUs: a warning."""
    done = run([*SMALL, "--plugin", "MultiProc", "--n-procs", "100000", "--threshold", "40"],
               tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith(PREFIX + "warning: ") for line in lines), lines
    cpus = len(os.sched_getaffinity(0))
    assert lines.count(f"{PREFIX}warning: --n-procs 100000 is more than the {cpus} CPUs this "
                       f"run may use: {cpus} processes") == 1
    assert not any("empty" in line for line in lines)  # nothing to say to the user
    assert any("must not exceed" in line for line in lines)  # nilearn's, on one line
    # --threshold 3: nilearn's FutureWarning about its default threshold says nothing here
    again = run([*SMALL, "--threshold", "3"], tmp_path)
    assert again.returncode == 0 and again.stderr == "", again.stderr


FAKE_QUEUE = textwrap.dedent("""\
    #!/bin/sh
    # records its command line, then refuses the job
    echo "$0 $*" >> "$(dirname "$0")/calls.log"
    exit 1
    """)
#: SGE's plugin asks qstat for the user's jobs when it starts: none
FAKE_QSTAT = "#!/bin/sh\necho '<?xml version=\"1.0\"?><job_info><job_info/></job_info>'\n"


@pytest.mark.parametrize("plugin, command, plugin_args", [
    ("SGE", "qsub", {"qsub_args": "-q fast.q -l h_rt=60"}),
    ("pbs", "qsub", {"qsub_args": "-q short -l walltime=60"}),
    ("LSF", "bsub", {"bsub_args": "-q short -W 60"}),
])
def test_any_nipype_plugin_gets_its_arguments(tmp_path, plugin, command, plugin_args):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / command).write_text(FAKE_QUEUE)
    if plugin == "SGE":
        (fake / "qstat").write_text(FAKE_QSTAT)
    for path in fake.iterdir():
        path.chmod(0o755)
    env = dict(ENV, PATH=f"{fake}:{ENV['PATH']}")
    args = {**plugin_args, "max_tries": 0, "retry_timeout": 0}
    done = run([*SMALL, "--plugin", plugin, "--plugin-args", json.dumps(args)], tmp_path, env)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(PREFIX + "error: "), line  # nipype's own error, on one line
    [call] = (fake / "calls.log").read_text().splitlines()
    words = call.split()
    assert words[0] == str(fake / command)
    assert " ".join(plugin_args.values()) in call  # passed through, as written
    assert words[-1].startswith(str(tmp_path / "work" / "demo_wf" / "batch"))  # the job


def test_unknown_plugin_and_bad_plugin_args_are_one_line(tmp_path):
    done = run([*SMALL, "--plugin", "Nonesuch"], tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{PREFIX}error: --plugin Nonesuch: is not a nipype plugin; "
                           "choose one of ")
    assert "MultiProc" in line and "SLURMGraph" in line and "SGE" in line
    refused = run([*SMALL, "--plugin-args", "[1, 2]"], tmp_path)
    assert refused.returncode == 2
    assert "argument --plugin-args: must be a JSON object" in refused.stderr.splitlines()[-1]


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / LOCK_NAME).symlink_to(victim)
    done = run([*SMALL, "--work-dir", "work"], tmp_path)
    assert done.returncode == 1
    link = tmp_path / "work" / LOCK_NAME
    assert done.stderr.splitlines() == [
        f"{PREFIX}error: work folder {tmp_path / 'work'}: its lock file {link} is a symbolic "
        + "link, which a run never writes through; remove it"]
    assert victim.read_text() == "precious data\n"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


HOLDER = textwrap.dedent("""
    import sys, time
    from nipype_secondlevel.runtime.interrupts import die_with_parent
    from nipype_secondlevel.runtime.locking import FolderLock
    die_with_parent()
    FolderLock(sys.argv[1], "results folder", path=sys.argv[2], stream=False).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def test_one_run_per_results_folder(tmp_path):
    out = tmp_path / "out"
    lock = results_lock_path(out)
    assert lock == tmp_path / f".out{LOCK_NAME}"  # beside the results folder, not in it
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(lock)], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = run([*SMALL, "--out-dir", "out", "--work-dir", "other_work"], tmp_path)
        assert busy.returncode == 1
        [line] = busy.stderr.splitlines()
        assert line.startswith(f"{PREFIX}error: results folder {out} is in use by another "
                               f"run: PID {holder.pid} on ")
        assert line.endswith("; wait for it to end or pass --wait")
        assert not out.exists()
        waiting = subprocess.Popen(cli(*SMALL, "--out-dir", "out", "--work-dir", "w", "--wait"),
                                   cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
        note = waiting.stderr.readline()
        assert note.startswith(f"results folder {out} is in use by PID {holder.pid} on "), note
        assert note.rstrip().endswith("waiting for it to end")
    finally:
        holder.kill()
        holder.wait()
    assert waiting.wait(timeout=300) == 0, waiting.stderr.read()
    assert (out / "design.tsv").exists()
    assert not list(Path(out).glob(".*lock*"))
