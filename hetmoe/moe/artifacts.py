"""Model artifacts: ``config.json`` + ``weights.safetensors`` (or LightGBM text files), and the store identity check.

Why the check: a head is only valid for the vector spaces it was trained on. ``config.json`` records, per expert, the
card (and its hash) and the fingerprints of the item and query stores; loading compares them with the stores on disk
and refuses a changed one with one line instead of silently scoring garbage.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.files import publish, write_json_atomic

log = logging.getLogger(__name__)
FORMAT = "hetmoe-moe/3"  # /2: per-expert centring vectors in the weights; /3: reference pair statistics
CONFIG, WEIGHTS = "config.json", "weights.safetensors"
STACK_FILE = "stack.txt"  # a stacked head's booster (LightGBM text format), beside the weights


def expert_identity(store_root: str | Path, expert: str, opened: Any = None) -> dict[str, Any]:
    """Card, card hash, dims and input fingerprints of one expert's item and query stores (``opened``: its
    ExpertStores, when the caller has them open already)."""
    from hetmoe.store.zarr_store import open_expert

    opened = opened or open_expert(store_root, expert)
    items, queries = opened.items, opened.queries
    man = items.manifest
    return {
        "card": man.get("card", {}),
        "card_hash": man.get("card_hash"),
        "dim": int(man.get("dim", items.dim)),
        "items_fingerprint": man.get("input_fingerprint"),
        "queries_fingerprint": queries.manifest.get("input_fingerprint"),
    }


def lexical_identity(store_root: str | Path, name: str) -> dict[str, Any]:
    """Config hash and items fingerprint of a lexical store (what a model trained on it must find again)."""
    from hetmoe.store.layout import expert_dir, read_manifest

    manifest = read_manifest(expert_dir(store_root, name)) or {}
    return {"store": name, "config_hash": manifest.get("config_hash"),
            "items_fingerprint": manifest.get("items", {}).get("input_fingerprint")}


def check_identity(config: dict[str, Any], store_root: str | Path, model_dir: Path,
                   check_queries: bool = False) -> dict[str, Any]:
    """Raise HetmoeError when an expert's card or item store (and, for evaluation, query store) or the lexical store
    changed; a store that only grew by appends since (its history holds the recorded fingerprint) is accepted.
    Returns every expert's opened stores (ExpertStores), so callers need not open them again."""
    from hetmoe.experts.runtime import interchangeable
    from hetmoe.store.identity import StoreIdentity
    from hetmoe.store.zarr_store import open_expert

    saved_lex = config.get("lexical_identity")
    if saved_lex and lexical_identity(store_root, saved_lex["store"]) != saved_lex:
        raise HetmoeError(f"model {model_dir} was trained on another lexical store '{saved_lex['store']}' than the one in "
                          f"{store_root} (refitted since?); retrain it with 'hetmoe fit-head' on these stores")
    opened: dict[str, Any] = {}
    for expert, saved in config.get("experts", {}).items():
        try:
            opened[expert] = open_expert(store_root, expert)
        except HetmoeError as err:
            raise HetmoeError(f"model {model_dir} needs the '{expert}' store under {store_root}: {err}") from err
        now = expert_identity(store_root, expert, opened[expert])
        for part in ("card", "items", *(["queries"] if check_queries else [])):
            key = "card_hash" if part == "card" else f"{part}_fingerprint"
            if saved.get(key) == now.get(key):
                continue
            if part == "card" and interchangeable(saved.get("card"), now.get("card")):
                log.info("'%s' store: card %s is stated interchangeable with the model's %s", expert,
                         str(now.get(key))[:12], str(saved.get(key))[:12])
                continue
            view = getattr(opened[expert], part).manifest if part != "card" else None
            added = None if view is None else StoreIdentity(None, saved.get(key)).grown_from(view)
            if added is not None:
                log.info("'%s' %s store: %d rows appended since model %s was trained", expert, part, added, model_dir)
                continue  # the rows it was trained on are unchanged (hetmoe embed --append only adds rows)
            stated = " (a card of another runtime needs interchangeable_with, see 'hetmoe experts check')"
            raise HetmoeError(
                f"model {model_dir} was trained on a different '{expert}' {part} store ({key} "
                f"{str(saved.get(key))[:12]} != {str(now.get(key))[:12]} in {store_root}); retrain it with "
                f"'hetmoe fit-head' on these stores or point --store at the stores it was trained on"
                f"{stated if part == 'card' else ''}"
            )
    return opened


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Model JSON in its own layout (indented, keys in written order), atomically: a kill never leaves half a config."""
    write_json_atomic(path, data, indent=2, sort_keys=False)


def read_config(model_dir: str | Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / CONFIG
    if not path.is_file():
        raise HetmoeError(f"{model_dir}: no {CONFIG}; train a model with 'hetmoe fit-head --data DIR --store S --out {model_dir}'")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HetmoeError(f"{path}: not valid JSON ({type(err).__name__}); the model is damaged, fit it again with "
                          "'hetmoe fit-head'") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise HetmoeError(f"{path}: format {found!r} is not {FORMAT!r}; retrain the model with this hetmoe")
    return config


def write_net(out_dir: str | Path, spec: dict[str, Any], weights: dict[str, np.ndarray], meta: dict[str, Any],
              booster: Any = None) -> Path:
    """Write weights (safetensors; a stacked head's booster beside them) then config (atomically, last: its presence
    marks a complete artifact)."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS + ".tmp")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, str(tmp))
    publish(tmp, out / WEIGHTS)  # safetensors creates it 0600
    if booster is not None:
        booster.save_model(str(out / (STACK_FILE + ".tmp")))
        os.replace(out / (STACK_FILE + ".tmp"), out / STACK_FILE)
    kind = "net" if booster is None else "stacked"
    write_json(out / CONFIG, {"format": FORMAT, "kind": kind, "spec": spec, **meta})
    log.info("saved %s model to %s", meta.get("variant", "?"), out)
    return out


def read_net_config(model_dir: str | Path, store_root: str | Path | None = None) -> dict[str, Any]:
    """The config of a net artifact (``store_root`` replaces the recorded one); any other kind is refused."""
    config = read_config(model_dir)
    if config.get("kind") not in ("net", "stacked"):
        raise HetmoeError(f"{model_dir} holds a {config.get('kind')} model; load it with hetmoe.moe.lgbm.LgbmModel.load")
    if store_root is not None:
        config["store_root"] = str(store_root)
    return config


def read_weights(model_dir: str | Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(model_dir) / WEIGHTS))
