"""The architecture of one stage-two model, as plain data shared by training (torch) and inference (numpy).

Why a separate spec: the same numbers must rebuild the torch net for training and the numpy weights for serving,
and the spec is what ``config.json`` records next to the weights.

Routers (``router``): the kinds of :mod:`hetmoe.moe.routers` (``hard``, the method; ``soft``, ``none``, ``rule``),
each described in its own module.

Training-only knobs kept here because they shape the trained weights: ``router_noise`` (scale of the Gumbel noise
added to router logits when selecting the top k in training, so experts the router does not favour yet still get
routed and receive gradient) and ``dropout`` (on each expert's interaction vector).

Pair statistics (``pair_stats``): ``reference`` (default; each cosine against the query's ``ref_top`` best cosines
in its market's catalog, so a pair's score never depends on the other items of a request) or ``listwise`` (z-score
and rank within the scored list, as judged lists are in training: scores then depend on their companions).

Item neighbourhoods (``item_neighbourhood``): the stacked head also reads, per routed expert, the pair's
item-neighbourhood features (:mod:`hetmoe.pairs.blocks.neighbourhood`); the net does not. With ``stack_router`` it also reads
the router expert's columns on every query, routed or not: the router computes that expert's query vector for every
query anyway, so they add a catalog search per query but no encoder run (the net still reads routed experts only).

Extra blocks (``extra_blocks``): names of feature blocks (:mod:`hetmoe.pairs.blocks`) the stacked head and LightGBM
read beside their standard inputs; a new block is one registered module, named here (``fit-head --block``).

Fusion (``fusion``): ``concat`` (routed experts' projected features side by side in fixed expert order, unrouted slots
zero), ``weighted`` (their gate-weighted sum) or ``average`` (the gate-weighted average of the experts' projected
query and item vectors, compared once: the embedding-level fusion the method argues against). ``hidden`` > 0 puts a one-hidden-layer MLP on top, 0 a linear layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hetmoe.moe.routers import router_kind

FUSIONS = ("concat", "weighted", "average")
PAIR_STATS = ("reference", "listwise")
N_STATS = 3  # per-expert pair statistics: cosine, its z-score, and its gap to the best reference (or rank in the list)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's layers; weights live in safetensors next to it."""

    experts: list[str]
    dims: list[int]
    markets: list[str]
    router: str = "hard"
    fusion: str = "concat"
    k: int = 2
    rank: int = 48
    width: int = 32
    hidden: int = 64
    router_expert: str = ""  # the expert whose query vector feeds a learned router (fit names it)
    router_dim: int = 0
    router_hidden: int = 32
    router_noise: float = 1.0
    dropout: float = 0.0
    soft_threshold: float = 0.0
    rule_table: dict[str, list[str]] = field(default_factory=dict)
    pair_stats: str = "reference"
    ref_top: int = 16
    router_prior: float = 20.0  # logits per unit of zero-shot AUC below the market's best expert (0: no prior)
    lexical_store: str = ""  # name of the lexical expert's store ("" = none); its features feed every query
    lexical: list[str] = field(default_factory=list)  # the lexical feature names, in column order
    lexical_width: int = 16
    item_neighbourhood: bool = False  # the stacked head reads each routed expert's item-neighbourhood features
    stack_router: bool = False  # the stacked head reads the router expert's columns on every query
    extra_blocks: list[str] = field(default_factory=list)  # registered feature blocks the tree heads also read

    def __post_init__(self) -> None:
        router_kind(self.router)  # raises ValueError naming the known kinds
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.pair_stats not in PAIR_STATS:
            raise ValueError(f"pair_stats must be one of {PAIR_STATS}, got {self.pair_stats!r}")
        if len(self.experts) != len(self.dims) or not self.experts:
            raise ValueError("experts and dims must be non-empty and of equal length")

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    @property
    def learned_router(self) -> bool:
        return router_kind(self.router).learned and self.n_experts > 1

    @property
    def k_eff(self) -> int:
        """Experts routed per query: k for top-k kinds (hard, rule), all of them for the others (soft may drop some
        at inference)."""
        return min(self.k, self.n_experts) if router_kind(self.router).top_k else self.n_experts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(**data)
