"""The trainable stage-two network (torch): router, per-expert projections, concatenation or weighted fusion.

Per expert e (dimension d_e): a linear map ``proj[e]`` (d_e -> rank, no bias) shared by query and item, applied to the
L2-normalised raw vectors after centering them on the expert's mean training vector (``center[e]``, fixed, not learned)
and re-normalising: anisotropic experts (e5's cosines sit in 0.85 +- 0.04) otherwise bury their signal under one
common direction, their features train slowly, and the router learns to avoid them. The pair's interaction
``[u*v, |u-v|, cos, cos z-score, cos rank]`` (u, v the projected query and item) goes through its own layer
``inter[e]`` + ReLU into the shared width h. The router (market one-hot + the router expert's query vector -> MLP ->
softmax over N experts) gates them; gradient reaches it because each selected expert's features are scaled by its
renormalised gate. ``fusion="average"`` instead averages the projected vectors themselves (see ``averaged``).
Parameter names are the contract with the numpy inference in :mod:`hetmoe.moe.infer`.
"""
from __future__ import annotations

import torch
from torch import nn

from hetmoe.moe.routers import router_kind
from hetmoe.moe.spec import N_STATS, ModelSpec


def switch_loss(probs: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load balancing, N * sum_i f_i * P_i.

    ``probs`` (B, N) router softmax; ``selected`` (B, N) 0/1 dispatch mask. f_i is the share of dispatches that went to
    expert i (no gradient), P_i the mean router probability (gradient). Equals 1 when both are uniform, grows when the
    load concentrates; its gradient lowers the probability of over-used experts.
    """
    n = probs.shape[1]
    f = selected.float().sum(0) / selected.float().sum().clamp_min(1.0)
    p = probs.mean(0)
    return n * torch.sum(f.detach() * p)


def top_k_gates(probs: torch.Tensor, k: int, select: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (B, N) gates keeping the k largest probabilities (or largest ``select`` scores), renormalised to sum 1,
    and the 0/1 selection mask."""
    idx = torch.topk(probs if select is None else select, k, dim=1).indices
    mask = torch.zeros_like(probs).scatter_(1, idx, 1.0)
    kept = probs * mask
    return kept / kept.sum(1, keepdim=True).clamp_min(1e-12), mask


class Router(nn.Module):
    """Market one-hot (all zeros for an unknown market) and a cheap query vector -> logits over experts.

    ``prior`` (markets + 1, N), fixed: a per-market bias added to the logits (last row: unknown markets), set from
    each expert's zero-shot ranking quality in that market (:func:`hetmoe.moe.rule.router_prior`). A market with few
    queries gives the learned part little to go on; the prior still sends its queries to the experts that rank best
    there, and the learned part moves away from it only where the data says so.
    """

    def __init__(self, n_markets: int, router_dim: int, hidden: int, n_experts: int) -> None:
        super().__init__()
        self.n_markets = n_markets
        self.l1 = nn.Linear(n_markets + router_dim, hidden)
        self.l2 = nn.Linear(hidden, n_experts)
        self.prior = nn.Parameter(torch.zeros(n_markets + 1, n_experts), requires_grad=False)

    def forward(self, market: torch.Tensor, rvec: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros(market.shape[0], self.n_markets, dtype=rvec.dtype)
        known = market >= 0
        onehot[known.nonzero().squeeze(1), market[known]] = 1.0
        bias = self.prior[torch.where(known, market, torch.full_like(market, self.n_markets))]
        return self.l2(torch.relu(self.l1(torch.cat([onehot, rvec], dim=1)))) + bias


class MoENet(nn.Module):
    """Router + per-expert projections + fusion head; ``forward`` returns logits, the balance loss and router probs."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        r, h = spec.rank, spec.width
        self.proj = nn.ModuleList(nn.Linear(d, r, bias=False) for d in spec.dims)
        self.center = nn.ParameterList(nn.Parameter(torch.zeros(d), requires_grad=False) for d in spec.dims)
        self.inter = nn.ModuleList(nn.Linear(2 * r + N_STATS, h) for _ in spec.dims)
        self.explore = False
        self.drop = nn.Dropout(spec.dropout)  # training only: the demo catalog is small enough to memorise
        self.router = (
            Router(len(spec.markets), spec.router_dim, spec.router_hidden, spec.n_experts) if spec.learned_router else None
        )
        fan_in = (h * spec.n_experts if spec.fusion == "concat" else h) + (spec.lexical_width if spec.lexical else 0)
        if spec.lexical:  # the lexical expert: free (no query encoder), so every query gets it, outside the gates
            f = len(spec.lexical)
            self.lex_mean = nn.Parameter(torch.zeros(f), requires_grad=False)
            self.lex_std = nn.Parameter(torch.ones(f), requires_grad=False)
            self.lex = nn.Linear(f, spec.lexical_width)
        self.head = nn.ModuleDict(
            {"l1": nn.Linear(fan_in, spec.hidden), "l2": nn.Linear(spec.hidden, 1)}
            if spec.hidden > 0
            else {"out": nn.Linear(fan_in, 1)}
        )

    def gates(self, market: torch.Tensor, rvec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per query: dense (U, N) gates, router probabilities and dispatch mask (None without a learned router)."""
        if self.router is None:
            return torch.ones(market.shape[0], self.spec.n_experts), None, None
        logits = self.router(market, rvec)
        probs = torch.softmax(logits, dim=1)
        k = min(self.spec.k, self.spec.n_experts)
        if self.training and self.explore:
            # Warm-up: uniformly random k-subsets, so every expert's features get trained before the router commits
            # (otherwise the experts it happens to pick first get better features and keep getting picked).
            gates, mask = top_k_gates(probs, k, select=torch.rand_like(logits))
        elif self.training and self.spec.router_noise > 0:
            # Gumbel top-k: selection sampled without replacement in proportion to the router's probabilities, so
            # experts it does not pick yet still get routed now and then and receive gradient (renormalised gates
            # give an unselected expert none).
            gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)))
            gates, mask = top_k_gates(probs, k, select=logits.detach() + self.spec.router_noise * gumbel)
        else:
            gates, mask = top_k_gates(probs, k)
        return router_kind(self.spec.router).train_gates(probs, gates), probs, mask

    def forward(
        self,
        qv: list[torch.Tensor],
        dv: list[torch.Tensor],
        stats: torch.Tensor,
        q_local: torch.Tensor,
        market: torch.Tensor,
        rvec: torch.Tensor,
        lex: torch.Tensor | None = None,
        fixed_gates: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits (B,) for B pairs over U queries: ``qv[i]`` (U, d_i), ``market`` (U,), ``rvec`` (U, d_r) are per query,
        ``dv[i]`` (B, d_i), ``stats`` (B, N, 3), ``lex`` (B, F), ``fixed_gates`` (B, N) per pair; ``q_local`` (B,) maps
        pair -> query row.

        Projecting and routing each query once per batch (not once per pair) is what keeps training fast.
        """
        gates, probs, mask = self.gates(market, rvec)
        gates = fixed_gates if fixed_gates is not None else gates[q_local]
        if self.spec.fusion == "average":
            return self.finish(self.with_lexical(self.averaged(qv, dv, stats, q_local, gates), lex), probs, mask)
        feats = []
        for i in range(len(qv)):
            u, v = self.proj[i](self.centered(i, qv[i]))[q_local], self.proj[i](self.centered(i, dv[i]))
            x = self.drop(torch.cat([u * v, (u - v).abs(), stats[:, i]], dim=1))
            feats.append(torch.relu(self.inter[i](x)) * gates[:, i : i + 1])
        z = torch.cat(feats, dim=1) if self.spec.fusion == "concat" else torch.stack(feats).sum(0)
        return self.finish(self.with_lexical(z, lex), probs, mask)

    def with_lexical(self, z: torch.Tensor, lex: torch.Tensor | None) -> torch.Tensor:
        """The fused expert features with the lexical slot (standardised features -> own layer + ReLU) appended."""
        if not self.spec.lexical:
            return z
        if lex is None:
            raise ValueError("this model was built with lexical features; pass them to forward")
        return torch.cat([z, torch.relu(self.lex(self.drop((lex - self.lex_mean) / self.lex_std)))], dim=1)

    def set_lexical_scale(self, mean: "object", std: "object") -> None:
        """Fix the lexical features' standardisation (training means and standard deviations)."""
        with torch.no_grad():
            self.lex_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.lex_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def averaged(self, qv: list[torch.Tensor], dv: list[torch.Tensor], stats: torch.Tensor, q_local: torch.Tensor,
                 gates: torch.Tensor) -> torch.Tensor:
        """Embedding-level fusion (the paper's collapse baseline): the gate-weighted average of the routed experts'
        projected query and item vectors, and of their pair statistics, through the one interaction layer ``inter[0]``."""
        u = sum(self.proj[i](self.centered(i, qv[i]))[q_local] * gates[:, i : i + 1] for i in range(len(qv)))
        v = sum(self.proj[i](self.centered(i, dv[i])) * gates[:, i : i + 1] for i in range(len(dv)))
        fused_stats = (stats * gates[:, :, None]).sum(1)
        return torch.relu(self.inter[0](self.drop(torch.cat([u * v, (u - v).abs(), fused_stats], dim=1))))

    def finish(
        self, z: torch.Tensor, probs: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``forward``'s result from the fused features ``z``: the head's logits, the routing's balance loss, probs."""
        if self.spec.hidden > 0:
            logits = self.head["l2"](torch.relu(self.head["l1"](z))).squeeze(1)
        else:
            logits = self.head["out"](z).squeeze(1)
        aux = switch_loss(probs, mask) if probs is not None and mask is not None else torch.zeros(())
        return logits, aux, probs

    def centered(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Unit vectors re-centred on expert i's mean training vector and re-normalised."""
        return torch.nn.functional.normalize(x - self.center[i], dim=1)

    def set_prior(self, prior: "object") -> None:
        """Fix the router's per-market logit bias, (markets + 1, N); no-op without a learned router."""
        if self.router is not None:
            with torch.no_grad():
                self.router.prior.copy_(torch.as_tensor(prior, dtype=torch.float32))

    def set_centers(self, means: list["object"]) -> None:
        """Fix each expert's centre (mean of its L2-normalised training item and query vectors)."""
        with torch.no_grad():
            for c, m in zip(self.center, means):
                c.copy_(torch.as_tensor(m, dtype=torch.float32))

    def numpy_weights(self) -> dict[str, "object"]:
        """Every parameter as a contiguous float32 numpy array, keyed by its torch name (the inference contract)."""
        return {name: t.detach().cpu().numpy().astype("float32").copy() for name, t in self.state_dict().items()}
