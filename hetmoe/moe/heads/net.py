"""The MoE net at serving time: numpy in, numpy out, no torch on the hot path.

Why numpy: the head is tiny (a few small matrices per expert), so torch's per-op overhead (tens of microseconds)
would dominate scoring ~100 candidates; plain BLAS calls on float32 arrays are several times faster. Parameter names
are the contract with the torch net (:mod:`hetmoe.moe.net`). Per routed expert: the unit query and item vectors,
centred on the expert's mean training vector, re-normalised and projected (``project``), interact with the expert
statistics block (cos, z, gap) through the expert's own layer; the experts' features are concatenated (or summed, or
their vectors averaged: ``spec.fusion``), the lexical block goes through its own layer, and an MLP gives the logit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.heads.base import Head, matmul, register
from hetmoe.moe.spec import ModelSpec
from hetmoe.vectors import l2_normalize

if TYPE_CHECKING:
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures

WEIGHTS = "weights.safetensors"
STAT_COLUMNS = [0, 2, 3]  # of the stats block: cos, z, gap (the dot product is the trees')


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def net_blocks(spec: ModelSpec) -> dict[str, FeatureBlock]:
    """The blocks a net reads: each routed expert's statistics, and the lexical features when it was fitted with them."""
    from hetmoe.pairs.blocks import make_block

    blocks = {"stats": make_block("stats", {"pair_stats": spec.pair_stats})}
    if spec.lexical_store:
        blocks["lexical"] = make_block("lexical", {"store": spec.lexical_store})
    return blocks


@register
class NetHead(Head):
    """The net's layers as float32 arrays, read off ``weights`` (router weights stay with the model)."""

    kind = "net"
    files = (WEIGHTS,)

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
        self.spec = spec
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.weights = w
        s = spec
        self._proj_t = [np.ascontiguousarray(w[f"proj.{i}.weight"].T) for i in range(s.n_experts)]
        self._center = [w[f"center.{i}"] for i in range(s.n_experts)]
        self._inter_t = [np.ascontiguousarray(w[f"inter.{i}.weight"].T) for i in range(s.n_experts)]
        self._inter_b = [w[f"inter.{i}.bias"] for i in range(s.n_experts)]
        h = s.width
        if s.hidden > 0:
            first, self._b1 = w["head.l1.weight"], w["head.l1.bias"]
            self._out_w, self._out_b = w["head.l2.weight"][0], float(w["head.l2.bias"][0])
        else:
            first, self._b1 = w["head.out.weight"], None
            self._out_w, self._out_b = None, float(w["head.out.bias"][0])
        hl = s.lexical_width if s.lexical else 0  # the lexical slot is the head's last hl inputs
        if s.fusion == "concat":
            self._head_t = [np.ascontiguousarray(first[:, i * h : (i + 1) * h].T) for i in range(s.n_experts)]
        else:
            self._head_t = [np.ascontiguousarray(first[:, :h].T)] * s.n_experts
        if hl:
            self._lex_head_t = np.ascontiguousarray(first[:, first.shape[1] - hl :].T)
            self._lex_w_t, self._lex_b = np.ascontiguousarray(w["lex.weight"].T), w["lex.bias"]
            self._lex_mean, self._lex_std = w["lex_mean"], w["lex_std"]

    def blocks(self, spec: ModelSpec) -> dict[str, FeatureBlock]:
        return net_blocks(spec)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        from hetmoe.files import publish

        tmp = folder / (WEIGHTS + ".tmp")
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}, str(tmp))
        publish(tmp, folder / WEIGHTS)  # safetensors creates it 0600
        return {}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], spec: ModelSpec) -> NetHead:
        from hetmoe.moe.artifacts import read_weights

        try:
            return cls(spec, read_weights(folder, config))
        except KeyError as err:
            raise HetmoeError(f"{folder / WEIGHTS}: weight {err} is missing (written by another hetmoe version?); "
                              "retrain with 'hetmoe fit-head'") from None

    # ----- scoring --------------------------------------------------------------------------------------------
    def project(self, i: int, unit: np.ndarray) -> np.ndarray:
        """Unit vectors of expert i -> centred on its training mean, re-normalised, projected (as ``MoENet.centered``)."""
        return matmul(l2_normalize(unit - self._center[i]), self._proj_t[i])

    def logits(self, feats: PairFeatures, dense: np.ndarray) -> np.ndarray:
        """(n,) float32 logits of ``feats``' pairs under per-query-row dense gates (n_q, N)."""
        s, qi, di = self.spec, feats.batch.qi, feats.batch.di
        n = len(feats)
        gate = dense[qi]
        fan = s.hidden if s.hidden > 0 else 1
        acc = np.zeros((n, fan), np.float32)
        pooled = np.zeros((n, s.width), np.float32) if s.fusion == "weighted" else None
        averaged = [np.zeros((n, s.rank), np.float32), np.zeros((n, s.rank), np.float32), np.zeros((n, 3), np.float32)]
        for i, expert in enumerate(s.experts):
            g = gate[:, i]
            rows = np.flatnonzero(g > 0)
            if rows.size == 0:
                continue
            stats = feats.block("stats", expert)[:, STAT_COLUMNS]
            stats = stats if rows.size == n else stats[rows]
            # each query row and each item row projected once, then gathered per pair
            parts = (self.project(i, feats.q_units(expert))[qi[rows]], self.project(i, feats.d_units(expert))[di[rows]],
                     stats)
            if s.fusion == "average":
                for total, part in zip(averaged, parts):
                    total[rows] += part * g[rows, None]
                continue
            out = self.interact(i, *parts) * g[rows, None]
            if pooled is not None:
                pooled[rows] += out
            elif s.hidden > 0:
                acc[rows] += matmul(out, self._head_t[i])
            else:
                acc[rows, 0] += matmul(out, self._head_t[i][:, 0])
        if s.fusion == "average":
            pooled = self.interact(0, *averaged)
        if pooled is not None:
            acc = matmul(pooled, self._head_t[0] if s.hidden > 0 else self._head_t[0][:, :1])
        if s.lexical:
            lexical = feats.block("lexical")
            z = relu(matmul((lexical - self._lex_mean) / self._lex_std, self._lex_w_t) + self._lex_b)
            acc += matmul(z, self._lex_head_t if s.hidden > 0 else self._lex_head_t[:, :1])
        return matmul(relu(acc + self._b1), self._out_w) + self._out_b if s.hidden > 0 else acc[:, 0] + self._out_b

    def interact(self, i: int, u: np.ndarray, v: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """(n, width) pair features through interaction layer i, as ``MoENet`` computes them."""
        x = np.concatenate([u * v, np.abs(u - v), stats], axis=1)
        return relu(matmul(x, self._inter_t[i]) + self._inter_b[i])
