"""Linear layers of a CPU float32 torch model run through oneDNN with pre-packed weights instead of MKL's sgemm.

Why: torch's float32 ``linear`` on CPU calls MKL, whose sgemm takes a slow path on AMD CPUs; oneDNN (also inside torch,
used by its compiler for the same job) with weights reordered once for its kernels is faster at every matrix size,
most at the few-token sizes of one online query. Measured on this project's 2-core AMD EPYC (Zen 4) VM, a 384 -> 1536
layer: 15 rows 302 -> 200 us on one thread and 207 -> 104 us on two; 1,024 rows 15.3 -> 12.1 ms. The packaged MiniLM
per query (one thread): p50 10.7 -> 7.0 ms; vectors agree to 3e-7.

The ops are torch's own (``torch.ops.mkldnn``) but not public API, so each packed layer is checked against
``torch.nn.functional.linear`` once when it is packed, and a model keeps MKL wherever the ops are missing or disagree.
"""
from __future__ import annotations

import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

ROWS_HINT = 64  # rows oneDNN lays the weights out for; any count works (64 was as fast as 1 or none, 1-1,024 rows)
RTOL = 1e-4


def _ops() -> Any:
    """``torch.ops.mkldnn`` when it has the two ops and oneDNN is built in, else None."""
    import torch

    ops = torch.ops.mkldnn
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        ops._reorder_linear_weight, ops._linear_pointwise  # noqa: B018 - lookup raises when the op is not compiled in
    except (AttributeError, RuntimeError):
        return None
    return ops


@cache
def _packed_linear_class() -> type:
    """Defined on first use: torch must first be imported where its OpenMP runtime's spin-wait is set."""
    import torch

    class PackedLinear(torch.nn.Module):
        """``nn.Linear`` on oneDNN: same weights, laid out for its kernels once (inference only)."""

        def __init__(self, linear: torch.nn.Linear, ops: Any) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self._ops = ops
            self.weight = ops._reorder_linear_weight(linear.weight.detach(), ROWS_HINT)
            self.bias = None if linear.bias is None else linear.bias.detach()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._ops._linear_pointwise(x, self.weight, self.bias, "none", [], "")

    return PackedLinear


def pack_linears(model: Any) -> int:
    """Swap every float32 ``nn.Linear`` of a CPU inference model for a packed one that gives the same outputs;
    returns how many were swapped (0 when oneDNN's ops are unavailable)."""
    import torch

    ops = _ops()
    if ops is None:
        log.info("oneDNN linear ops unavailable in this torch build; linear layers stay on MKL")
        return 0
    threads = torch.get_num_threads()
    # One thread for the checks: a thread team started here, on the loading thread, would stay idle beside the team of
    # the thread that later encodes, and libgomp stops spin-waiting once it manages more threads than there are cores.
    torch.set_num_threads(1)
    try:
        return _swap(model, ops)
    finally:
        torch.set_num_threads(threads)


def _swap(model: Any, ops: Any) -> int:
    """Swap the linear layers whose packed twin agrees with them on a random input."""
    import torch

    packed_cls, probe = _packed_linear_class(), torch.Generator().manual_seed(0)
    swapped = 0
    with torch.no_grad():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not torch.nn.Linear or child.weight.dtype != torch.float32 or child.weight.is_cuda:
                    continue
                packed = packed_cls(child, ops)
                x = torch.randn(2, 5, child.in_features, generator=probe)
                want, got = torch.nn.functional.linear(x, child.weight, child.bias), packed(x)
                atol = RTOL * float(want.abs().max())
                if got.shape != want.shape or not torch.allclose(got, want, rtol=RTOL, atol=atol):
                    log.warning("oneDNN linear disagrees with torch's for %s; keeping MKL for it", name)
                    continue
                setattr(parent, name, packed)
                swapped += 1
    return swapped
