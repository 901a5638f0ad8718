"""The progress lines: one counted line per node; MultiProc's MapNode items are
named ``<MapNode>[i]`` and not counted, so the counter never exceeds its total."""

import io
import time
from types import SimpleNamespace

from nipype_secondlevel.runtime.execution import Progress


class FakeNode:
    """What the status callback reads of a nipype node."""

    def __init__(self, folder, name, fullname):
        self.folder, self.name, self.fullname = folder, name, fullname
        self.interface = SimpleNamespace(always_run=False)

    def output_dir(self):
        return str(self.folder)

    def is_cached(self):
        return (False, False)

    def finish(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"result_{self.name}.pklz").write_bytes(b"")


def test_map_items_are_named_and_not_counted(tmp_path):
    chunks = tmp_path / "demo_wf" / "perm_wf" / "chunks"
    items = [FakeNode(chunks / "mapflow" / f"_chunks{i}", f"_chunks{i}", f"_chunks{i}")
             for i in range(3)]
    nodes = [FakeNode(tmp_path / "demo_wf" / "plan", "plan", "demo_wf.plan"), *items,
             FakeNode(chunks, "chunks", "demo_wf.perm_wf.chunks")]
    stream = io.StringIO()
    progress = Progress(2, time.time(), stream=stream, base_dir=tmp_path)
    for node in nodes:
        progress(node, "start")
        node.finish()
        progress(node, "end")
    done = [line.strip() for line in stream.getvalue().splitlines() if "running" not in line]
    assert [line.split(": done")[0] for line in done] == [
        "[1/2] demo_wf.plan", "demo_wf.perm_wf.chunks[0]", "demo_wf.perm_wf.chunks[1]",
        "demo_wf.perm_wf.chunks[2]", "[2/2] demo_wf.perm_wf.chunks"]
    assert "        demo_wf.perm_wf.chunks[1]: running" in stream.getvalue().splitlines()
