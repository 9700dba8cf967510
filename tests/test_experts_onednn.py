"""oneDNN-packed linear layers: the same outputs as torch's own, and no thread team left on the thread that packs."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from hetmoe.experts.onednn import pack_linears


def test_packed_linears_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(48, 96), torch.nn.GELU(), torch.nn.Linear(96, 24, bias=False)).eval()
    x = torch.randn(3, 7, 48)
    with torch.no_grad():
        want = model(x)
        assert pack_linears(model) == 2
        assert [type(m).__name__ for m in model] == ["PackedLinear", "GELU", "PackedLinear"]
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x[0, :1]), want[0, :1], rtol=1e-5, atol=1e-5)  # one row, as one short query


def test_packing_starts_no_thread_team_on_the_loading_thread() -> None:
    """Its checks run single-threaded: an idle team left on the loading thread would make libgomp stop spin-waiting
    for the team of the thread that encodes (measured: MiniLM at 2 threads on its worker, p50 11 ms against 6 ms)."""
    code = textwrap.dedent("""
        import os, torch
        from hetmoe.experts.onednn import pack_linears
        torch.set_num_threads(2)
        layers = [torch.nn.Linear(384, 1536) if i % 2 == 0 else torch.nn.Linear(1536, 384) for i in range(6)]
        model = torch.nn.Sequential(*layers).eval()
        before = len(os.listdir("/proc/self/task"))
        packed = pack_linears(model)
        print(packed, len(os.listdir("/proc/self/task")) - before, torch.get_num_threads())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["6", "0", "2"], out.stdout + out.stderr
