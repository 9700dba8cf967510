"""Expert cards: the declarative identity of one embedding expert.

A card says which backend loads which model with which prompts, pooling and normalisation. Its :attr:`ExpertCard.hash`
covers exactly the fields that change the vectors, so every stored vector can be traced back to (and checked against)
the card that produced it, while batch size, device and threads stay free to tune.
"""
from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from hetmoe.errors import HetmoeError

Kind = Literal["query", "document"]

CARDS_ENV = "HETMOE_CARDS"
POOLINGS = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float16", "bfloat16", "float32")
MODEL_FREE = frozenset({"lexical"})  # backends fitted on the catalog in stage one, not loaded from a model
# Fields that do not change a single output vector: excluded from the identity hash.
_NOT_IN_HASH = frozenset({"name", "batch_size", "chunk_size", "device", "threads", "dim", "languages"})


@dataclass(frozen=True)
class ExpertCard:
    """One expert as declared in ``configs/experts.toml``.

    ``model`` is a local directory or file, ``pkg:<module>[/<sub/path>]`` for a model shipped inside an installed
    package, or a Hugging Face id resolved from the local cache only. ``dtype`` is the precision used on CUDA; on CPU
    models always run in float32 (half precision there is slower and lossy). ``threads`` = 0 means all cores the
    process may use. ``languages`` lists ISO codes, or ``"*"`` for a multilingual expert. ``chunk_size`` is the number
    of texts per store chunk (the unit ``embed`` encodes in one call, writes and resumes from); unset, the store picks.
    """

    name: str
    backend: str
    model: str = ""  # empty only for backends without a model (MODEL_FREE)
    revision: str | None = None
    pooling: str | None = None
    max_length: int | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    dtype: str = "float16"
    batch_size: int = 64
    chunk_size: int | None = None
    normalize: bool = True
    dim: int | None = None
    languages: tuple[str, ...] = field(default=("*",))
    device: str = "auto"
    threads: int = 0
    options: dict[str, Any] | None = None  # backend settings without a field of their own (lexical: LexicalConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        _validate(self)

    @property
    def hash(self) -> str:
        """Stable short sha256 of the canonical JSON of the vector-changing fields."""
        identity = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_HASH}
        if identity["options"] is None:
            del identity["options"]  # cards without options keep the hash they had before options existed
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def prompt(self, kind: Kind) -> tuple[str | None, str | None]:
        """(literal prompt, prompt name) the card declares for ``kind``."""
        if kind == "query":
            return self.query_prompt, self.query_prompt_name
        return self.document_prompt, self.document_prompt_name

    def supports(self, lang: str | None) -> bool:
        """Whether the expert was trained for ``lang`` (unknown language: only multilingual experts)."""
        return "*" in self.languages or (lang is not None and lang in self.languages)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (model configs store cards this way so the online Scorer can rebuild encoders)."""
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExpertCard:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos in a card never pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HetmoeError(
                f"expert card {d.get('name', '?')!r} has unknown keys {unknown}; allowed keys are {sorted(known)}"
            )
        required = ("name", "backend") if d.get("backend") in MODEL_FREE else ("name", "backend", "model")
        missing = [k for k in required if not d.get(k)]
        if missing:
            raise HetmoeError(
                f"expert card {d.get('name', '?')!r} lacks {missing}; every card needs name, backend, model"
            )
        return cls(**d)


def _validate(card: ExpertCard) -> None:
    """Reject cards that cannot work, with the fix in the message."""
    where = f"expert card {card.name!r}"
    if card.pooling is not None and card.pooling not in POOLINGS:
        raise HetmoeError(f"{where}: pooling {card.pooling!r} is unknown; use one of {list(POOLINGS)}")
    if card.device not in DEVICES:
        raise HetmoeError(f"{where}: device {card.device!r} is unknown; use one of {list(DEVICES)}")
    if card.dtype not in DTYPES:
        raise HetmoeError(f"{where}: dtype {card.dtype!r} is unknown; use one of {list(DTYPES)}")
    sizes = (card.max_length, card.chunk_size)
    if card.batch_size < 1 or card.threads < 0 or any(n is not None and n < 1 for n in sizes):
        raise HetmoeError(f"{where}: batch_size, chunk_size and max_length must be >= 1 and threads >= 0; fix the card")
    if card.dim is not None and card.dim < 1:
        raise HetmoeError(f"{where}: dim must be a positive integer; set it to the model's embedding size")
    for kind in ("query", "document"):
        if all(p is not None for p in card.prompt(kind)):  # type: ignore[arg-type]
            raise HetmoeError(f"{where}: set either {kind}_prompt or {kind}_prompt_name, not both")


def default_cards_path() -> Path:
    """``$HETMOE_CARDS`` if set, else ``configs/experts.toml`` of the repository this package lives in."""
    env = os.environ.get(CARDS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "configs" / "experts.toml"


def _read_toml(path: str | Path | None) -> tuple[Path, dict[str, Any]]:
    p = Path(path).expanduser() if path is not None else default_cards_path()
    if not p.is_file():
        raise HetmoeError(f"expert cards file {p} does not exist; pass an existing file or set ${CARDS_ENV}")
    try:
        with p.open("rb") as fh:
            return p, tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise HetmoeError(f"expert cards file {p} is not valid TOML ({err}); fix the syntax") from err


def load_cards(path: str | Path | None = None) -> dict[str, ExpertCard]:
    """All cards of the file, by name. A ``model`` starting with ``./`` or ``../`` is relative to the file."""
    p, doc = _read_toml(path)
    table = doc.get("experts", {})
    if not isinstance(table, dict) or not table:
        raise HetmoeError(f"expert cards file {p} has no [experts.<name>] tables; declare at least one card")
    cards: dict[str, ExpertCard] = {}
    for name, body in table.items():
        d = dict(body)
        d["name"] = name
        model = d.get("model")
        if isinstance(model, str) and model.startswith(("./", "../")):
            d["model"] = str((p.parent / model).resolve())
        cards[name] = ExpertCard.from_dict(d)
    return cards


def get_card(name: str, path: str | Path | None = None) -> ExpertCard:
    """The card called ``name``; an unknown name lists the known ones."""
    cards = load_cards(path)
    if name not in cards:
        where = Path(path) if path is not None else default_cards_path()
        raise HetmoeError(f"unknown expert {name!r}; known experts in {where}: {', '.join(sorted(cards))}")
    return cards[name]


def default_experts(path: str | Path | None = None) -> list[str]:
    """The ``[defaults] experts`` list of the cards file (each name checked against the cards)."""
    p, doc = _read_toml(path)
    names = doc.get("defaults", {}).get("experts")
    if not isinstance(names, list) or not names:
        raise HetmoeError(f"expert cards file {p} lacks [defaults] experts = [...]; add the default expert names")
    cards = load_cards(p)
    unknown = [n for n in names if n not in cards]
    if unknown:
        raise HetmoeError(
            f"[defaults] experts in {p} names unknown experts {unknown}; known: {', '.join(sorted(cards))}"
        )
    return [str(n) for n in names]
