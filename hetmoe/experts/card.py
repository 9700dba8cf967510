"""Expert cards: the declarative identity of one embedding expert.

A card says which backend loads which model with which prompts, pooling and normalisation. Its :attr:`ExpertCard.hash`
covers exactly the fields that change the vectors, so every stored vector can be traced back to (and checked against)
the card that produced it, while batch size, device and threads stay free to tune.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from hetmoe.errors import HetmoeError

Kind = Literal["query", "document"]

CARDS_ENV = "HETMOE_CARDS"
POOLINGS = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")  # cuda:N picks the N-th visible GPU
DTYPES = ("auto", "float16", "bfloat16", "float32")
RUNTIMES = ("torch", "onnx", "onnx-int8")  # what runs a sentence-transformers model (see hetmoe.experts.runtime)
PACKAGED_CARDS = Path(__file__).resolve().parent / "cards.toml"  # shipped in the wheel
MODEL_FREE = frozenset({"lexical"})  # backends fitted on the catalog in stage one, not loaded from a model
# Fields that do not change a single output vector: excluded from the identity hash.
# The exported file's place is not its identity (its digest is); ``interchangeable_with`` is a statement about the
# vectors, not a change to them.
_NOT_IN_HASH = frozenset({"name", "batch_size", "chunk_size", "device", "threads", "dim", "runtime_file",
                          "interchangeable_with"})
# Keys cards and model configs once carried that nothing reads any more: dropped on load, so old files keep working.
_RETIRED = frozenset({"languages"})


@dataclass(frozen=True)
class ExpertCard:
    """One expert as declared in a cards file (the packaged ``hetmoe/experts/cards.toml`` and the user's ``--cards``).

    ``model`` is a local directory or file, ``pkg:<module>[/<sub/path>]`` for a model shipped inside an installed
    package, or a Hugging Face id resolved from the local cache only. ``dtype`` is the precision used on CUDA ("auto":
    bfloat16 where the GPU supports it, else float32); on CPU models always run in float32 (half precision there is
    slower and lossy). ``device`` is auto, cpu, cuda or cuda:N. ``threads`` = 0 means all cores the
    process may use. ``chunk_size`` is the number of texts per store chunk (the unit ``embed`` encodes in one call, writes and resumes from); unset, the store picks.

    ``runtime`` "onnx" / "onnx-int8" runs the model's exported ONNX graph (float32 / dynamically quantized int8) in
    ONNX Runtime: ``runtime_file`` is that graph and ``runtime_sha256`` its digest, which enters the hash, so vectors
    of one runtime are never taken for another's. ``interchangeable_with`` names the hash of a card whose stored
    vectors this card's may be compared with (and the reverse): a statement made after ``hetmoe experts check``
    measured that it is safe, e.g. int8 queries against float32 item vectors.
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
    dtype: str = "auto"
    batch_size: int = 64
    chunk_size: int | None = None
    normalize: bool = True
    dim: int | None = None
    device: str = "auto"
    threads: int = 0
    runtime: str = "torch"
    runtime_file: str | None = None
    runtime_sha256: str | None = None
    interchangeable_with: str | None = None
    options: dict[str, Any] | None = None  # backend settings without a field of their own (lexical: LexicalConfig)

    def __post_init__(self) -> None:
        _check_types(self)
        _validate(self)

    @property
    def hash(self) -> str:
        """Stable short sha256 of the canonical JSON of the vector-changing fields."""
        identity = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_HASH}
        if identity["options"] is None:
            del identity["options"]  # cards without options keep the hash they had before options existed
        if identity["runtime"] == "torch":  # torch cards keep the hash they had before runtimes existed
            del identity["runtime"], identity["runtime_sha256"]
        if identity["dtype"] == "auto":  # keeps the hash of the float16 default it replaced: same vectors on CPU
            identity["dtype"] = "float16"
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def prompt(self, kind: Kind) -> tuple[str | None, str | None]:
        """(literal prompt, prompt name) the card declares for ``kind``."""
        if kind == "query":
            return self.query_prompt, self.query_prompt_name
        return self.document_prompt, self.document_prompt_name

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (model configs store cards this way so the online Scorer can rebuild encoders)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExpertCard:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos in a card never pass silently (retired ones
        are dropped)."""
        d = {k: v for k, v in d.items() if k not in _RETIRED}
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


# Field -> (expected kind, None allowed, smallest value for ints). Checked before anything else, so a quoted number
# or a string where a list belongs is refused here, naming the card and field, instead of deep inside a backend.
_TYPES: dict[str, tuple[type, bool, int | None]] = {
    "name": (str, False, None), "backend": (str, False, None), "model": (str, False, None),
    "revision": (str, True, None), "pooling": (str, True, None), "max_length": (int, True, 1),
    "query_prompt": (str, True, None), "document_prompt": (str, True, None),
    "query_prompt_name": (str, True, None), "document_prompt_name": (str, True, None),
    "dtype": (str, False, None), "batch_size": (int, False, 1), "chunk_size": (int, True, 1),
    "normalize": (bool, False, None), "dim": (int, True, 1), "device": (str, False, None), "threads": (int, False, 0),
    "runtime": (str, False, None), "runtime_file": (str, True, None), "runtime_sha256": (str, True, None),
    "interchangeable_with": (str, True, None),
}
_KIND_WORD = {str: "a string", int: "an integer", bool: "true or false"}


def _shown(value: object) -> str:
    """A TOML-ish rendering of a bad value and its type, for the error line."""
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{text[:40]}{'...' if len(text) > 40 else ''} ({kind})"


def _check_types(card: ExpertCard) -> None:
    """Every field has its declared type and range (bool is not an int here, 2.5 is not an int, "1024" is no number)."""
    name = card.name if isinstance(card.name, str) else repr(card.name)
    where = f"expert card {name!r}"
    for field_name, (kind, optional, low) in _TYPES.items():
        value = getattr(card, field_name)
        if value is None and optional:
            continue
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            hint = f"; fix {field_name} in the card"
            if kind is int and isinstance(value, str) and value.strip().isdigit():
                hint = f"; write {field_name} = {value.strip()}"
            elif kind is bool and str(value).lower() in ("true", "false"):
                hint = f"; write {field_name} = {str(value).lower()}"
            elif field_name == "threads":
                hint = "; threads = 0 means all cores"
            raise HetmoeError(f"{where}: {field_name} must be {_KIND_WORD[kind]}{' or absent' if optional else ''}, "
                              f"got {_shown(value)}{hint}")
        if low is not None and value < low:
            raise HetmoeError(f"{where}: {field_name} must be >= {low}, got {value}; fix {field_name} in the card")
        if kind is str and not optional and not value.strip() and not (field_name == "model" and card.backend in MODEL_FREE):
            raise HetmoeError(f"{where}: {field_name} must not be empty; fix {field_name} in the card")


def _validate(card: ExpertCard) -> None:
    """Reject cards that cannot work, with the fix in the message."""
    where = f"expert card {card.name!r}"
    if card.pooling is not None and card.pooling not in POOLINGS:
        raise HetmoeError(f"{where}: pooling {card.pooling!r} is unknown; use one of {list(POOLINGS)}")
    if not DEVICE.match(card.device):
        raise HetmoeError(f"{where}: device {card.device!r} is unknown; use auto, cpu, cuda or cuda:N (N: a GPU index)")
    if card.dtype not in DTYPES:
        raise HetmoeError(f"{where}: dtype {card.dtype!r} is unknown; use one of {list(DTYPES)}")
    for kind in ("query", "document"):
        if all(p is not None for p in card.prompt(kind)):  # type: ignore[arg-type]
            raise HetmoeError(f"{where}: set either {kind}_prompt or {kind}_prompt_name, not both")
    _validate_runtime(card, where)


def _validate_runtime(card: ExpertCard, where: str) -> None:
    """An exported runtime names its file and digest; torch names neither; hashes are hex of the right length."""
    if card.runtime not in RUNTIMES:
        raise HetmoeError(f"{where}: runtime {card.runtime!r} is unknown; use one of {list(RUNTIMES)}")
    exported = {"runtime_file": card.runtime_file, "runtime_sha256": card.runtime_sha256}
    if card.runtime != "torch" and card.device.startswith("cuda"):
        raise HetmoeError(f"{where}: runtime {card.runtime!r} runs on the CPU; set device = \"auto\" or \"cpu\"")
    if card.runtime == "torch" and any(v is not None for v in exported.values()):
        raise HetmoeError(f"{where}: runtime_file and runtime_sha256 belong to runtime \"onnx\" or \"onnx-int8\"; "
                          "set runtime or remove them")
    missing = [k for k, v in exported.items() if v is None]
    if card.runtime != "torch" and missing:
        raise HetmoeError(f"{where}: runtime = {card.runtime!r} needs {missing}; 'hetmoe experts export' writes cards "
                          "with them")
    for field_name, digits in (("runtime_sha256", 64), ("interchangeable_with", 16)):
        value = getattr(card, field_name)
        if value is not None and not re.fullmatch(f"[0-9a-f]{{{digits}}}", value):
            raise HetmoeError(f"{where}: {field_name} must be {digits} lowercase hex digits, got {_shown(value)}")


def user_cards_path(path: str | Path | None = None) -> Path | None:
    """The user's cards file: ``path``, else ``$HETMOE_CARDS``, else None (the packaged cards alone)."""
    chosen = path if path is not None else os.environ.get(CARDS_ENV) or None
    return Path(chosen).expanduser() if chosen is not None else None


def _read_toml(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise HetmoeError(f"expert cards file {p} does not exist; pass an existing file to --cards or set ${CARDS_ENV}")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise HetmoeError(f"expert cards file {p} is not valid TOML ({err}); fix the syntax") from err


def _sources(path: str | Path | None) -> list[tuple[Path, dict[str, Any]]]:
    """The packaged cards, then the user's file: its cards and ``[defaults]`` keys add to or replace the packaged."""
    files = [PACKAGED_CARDS] + [p for p in [user_cards_path(path)] if p is not None]
    sources = [(p, _read_toml(p)) for p in files]
    for p, doc in sources[1:]:
        if not isinstance(doc.get("experts", {}), dict) or not (doc.get("experts") or doc.get("defaults")):
            raise HetmoeError(f"expert cards file {p} has no [experts.<name>] tables and no [defaults]; declare a card")
    return sources


def _tables(sources: list[tuple[Path, dict[str, Any]]]) -> dict[str, tuple[Path, Any]]:
    """Each card name -> (the file declaring it last, its TOML table)."""
    return {name: (p, body) for p, doc in sources for name, body in doc.get("experts", {}).items()}


def _build(p: Path, name: str, body: Any) -> ExpertCard:
    """One card from its TOML table; errors are prefixed with the file. A relative model path is relative to the
    cards file: ``./x`` and ``../x`` always, a bare ``models/x`` when it exists there (else it may be a hub id)."""
    if not isinstance(body, dict):
        raise HetmoeError(f"{p}: expert card {name!r} must be a table ([experts.{name}] with key = value lines), "
                          f"got {_shown(body)}")
    d = dict(body)
    d["name"] = name
    for key in ("model", "runtime_file"):
        value = d.get(key)
        if isinstance(value, str) and value and not value.startswith(("pkg:", "/", "~")):
            local = p.parent / value
            if value.startswith(("./", "../")) or local.exists():
                d[key] = str(local.resolve())
    try:
        return ExpertCard.from_dict(d)
    except HetmoeError as err:
        raise HetmoeError(f"{p}: {err}") from err


def load_cards(path: str | Path | None = None) -> dict[str, ExpertCard]:
    """All cards, packaged and the user's, by name (every one is checked: for commands that show or use them all)."""
    return {name: _build(p, name, body) for name, (p, body) in _tables(_sources(path)).items()}


def get_card(name: str, path: str | Path | None = None) -> ExpertCard:
    """The card called ``name``, checking only that one (a broken card elsewhere does not matter); an unknown name
    lists the known ones."""
    sources = _sources(path)
    tables = _tables(sources)
    if name not in tables:
        where = " + ".join(str(p) for p, _ in sources)
        raise HetmoeError(f"unknown expert {name!r}; known experts in {where}: {', '.join(sorted(tables))}")
    p, body = tables[name]
    return _build(p, name, body)


def default_experts(path: str | Path | None = None, key: str = "experts") -> list[str]:
    """The ``[defaults] experts`` list (names checked against the cards, which are not built);
    ``key="fast_experts"``: the cheap real experts benchmarks use where quality does not matter; ``"demo_experts"``:
    what ``hetmoe demo`` runs."""
    return _default_names(path, key, f"{key} = [...] (a list of card names)")


def default_router_expert(path: str | Path | None = None) -> str:
    """The ``[defaults] router_expert``: the cheap expert whose query vector feeds the router."""
    return _default_names(path, "router_expert", 'router_expert = "NAME" (the cheap expert the router reads)')[0]


def _default_names(path: str | Path | None, key: str, shape: str) -> list[str]:
    """``[defaults] <key>`` of the last file that sets it (one card name or a list), each checked against the cards."""
    sources = _sources(path)
    found = [(p, doc["defaults"][key]) for p, doc in sources if isinstance(doc.get("defaults"), dict) and key in doc["defaults"]]
    p, value = found[-1] if found else (sources[-1][0], None)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise HetmoeError(f"expert cards file {p} lacks [defaults] {shape}; add it")
    tables = _tables(sources)
    unknown = [n for n in names if n not in tables]
    if unknown:
        raise HetmoeError(f"[defaults] {key} in {p} names unknown experts {unknown}; known: {', '.join(sorted(tables))}")
    return list(names)
