"""The allocator settings of ``evalstream serve`` take effect: a 1 MiB block allocated after a
4 MiB one was freed is still served by mmap (so it goes back to the OS on free), where glibc's
dynamic threshold would have moved it into a heap. Checked with glibc's own counters
(``mallinfo2().hblks``: blocks served by mmap), in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
import numpy as np
from evalstream_server.allocator import tune_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_allocator()
big = np.ones(4 << 20, np.uint8); del big        # freed: glibc raises its threshold to 4 MiB
before = libc.mallinfo2().hblks
block = np.ones(1 << 20, np.uint8)
print(libc.mallinfo2().hblks - before)
"""


def _mapped_blocks(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the caller
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_allocator_keeps_large_blocks_in_mmap():
    assert _mapped_blocks("default") == 0  # glibc's dynamic threshold: the block is in a heap
    assert _mapped_blocks("tuned") == 1


TRIM_PROBE = """
import sys
from evalstream_server.allocator import release_free_memory, tune_allocator
tune_allocator()
chunks = [bytearray(4000) for _ in range(20000)]  # 80 MB of heap blocks (below the threshold)
del chunks
print(int(release_free_memory()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_free_heap_pages_go_back_after_a_sweep(monkeypatch):
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr  # glibc released some
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.exporters import prometheus as exporter
    from evalstream_server.store import MemoryStore

    calls = []
    monkeypatch.setattr(exporter, "release_free_memory", lambda: calls.append(1) or True)
    store = MemoryStore()
    store.create(StreamSpec(task="binary", name="t", windows=("1h",)))
    EvalstreamCollector(store, refresh_interval=60.0).sweep()
    assert calls == [1]
    on_scrape = EvalstreamCollector(store)  # reports computed on the scrape: after it
    on_scrape.exposition()
    assert calls == [1, 1]
    on_scrape.exposition()  # nothing changed, nothing built: no call
    assert calls == [1, 1]
