"""Model artifacts: ``config.json`` beside each head's own files (:mod:`hetmoe.moe.heads`), their digests, and the
store identity check.

Why the check: a head is only valid for the vector spaces it was trained on. ``config.json`` records, per expert, the
card (and its hash) and the fingerprints of the item and query stores; loading compares them with the stores on disk
and refuses a changed one with one line instead of silently scoring garbage.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.files import write_json_atomic
from hetmoe.integrity import DIGESTS, verify_digests, write_digests

log = logging.getLogger(__name__)
# /2: per-expert centring vectors in the weights; /3: reference pair statistics; /4: each head saves its own files
# and config.json lists them under "heads"
FORMAT = "hetmoe-moe/4"
CONFIG, WEIGHTS = "config.json", "weights.safetensors"
BOOSTER_END = ("\nend of trees\n", "\nend of parameters\n")  # lines every complete LightGBM model text holds


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


def _lexical_grown_from(store_root: str | Path, saved: dict[str, Any]) -> bool:
    """Whether the lexical store is the one a model recorded, or that store grown by appends since."""
    from hetmoe.store.layout import expert_dir, read_manifest

    now = lexical_identity(store_root, saved["store"])
    if now == saved:
        return True
    items = (read_manifest(expert_dir(store_root, saved["store"])) or {}).get("items", {})
    grew = any(h.get("previous_fingerprint") == saved.get("items_fingerprint") for h in items.get("history", []))
    return grew and now["config_hash"] == saved.get("config_hash")


def check_identity(config: dict[str, Any], store_root: str | Path, model_dir: Path,
                   check_queries: bool = False) -> dict[str, Any]:
    """Raise HetmoeError when an expert's card or item store (and, for evaluation, query store) or the lexical store
    changed; a store that only grew by appends since (its history holds the recorded fingerprint) is accepted.
    Returns every expert's opened stores (ExpertStores), so callers need not open them again."""
    from hetmoe.experts.runtime import interchangeable
    from hetmoe.store.identity import StoreIdentity
    from hetmoe.store.zarr_store import open_expert

    saved_lex = config.get("lexical_identity")
    if saved_lex and not _lexical_grown_from(store_root, saved_lex):
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


PORTABLE_PATHS = ("store_root", "dataset")  # kept relative to the file's folder: a model moves with its stores
AT_FIT = "_at_fit"  # suffix of the same paths kept absolute, for a model copied away from its stores


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Model JSON in its own layout (indented, keys in written order), atomically: a kill never leaves half a config.
    The stores and dataset it names are written relative to its folder, so a model folder copied together with its
    stores (the same relative layout) loads at the new place, on another machine too; their absolute paths are kept
    beside, for a model copied alone on the machine it was fitted on."""
    folder = Path(path).resolve().parent
    portable: dict[str, str] = {}
    for key in PORTABLE_PATHS:
        if isinstance(data.get(key), str) and not data.get(key + AT_FIT):
            absolute = Path(data[key]).resolve()
            portable.update({key: os.path.relpath(absolute, folder), key + AT_FIT: str(absolute)})
    write_json_atomic(path, {**data, **portable}, indent=2, sort_keys=False)


def resolve_paths(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The config with its stores / dataset paths made absolute: relative to ``folder`` when that exists, else where
    they were at fit time (absolute paths, as models from before recorded them, are kept)."""
    resolved = dict(config)
    for key in PORTABLE_PATHS:
        value = config.get(key)
        if not isinstance(value, str) or Path(value).is_absolute():
            continue
        here = (Path(folder) / value).resolve()
        at_fit = config.get(key + AT_FIT)
        resolved[key] = str(here if here.exists() or not at_fit or not Path(at_fit).exists() else at_fit)
    return resolved


def refit_command(model_dir: str | Path) -> str:
    """The command that writes ``model_dir`` again (a variant's folder is written by the fit of its parent model),
    with the dataset and stores its config names when it can be read."""
    model_dir = Path(model_dir)
    out = model_dir.parent.parent if model_dir.parent.name == "variants" else model_dir
    try:
        config = resolve_paths(json.loads((model_dir / CONFIG).read_text(encoding="utf-8")), model_dir)
        data, store = config.get("dataset") or "DIR", config.get("store_root") or "STORE"
    except (OSError, ValueError, AttributeError):
        data, store = "DIR", "STORE"
    return f"'hetmoe fit-head --data {data} --store {store} --out {out}'"


def verify_model_files(model_dir: str | Path, files: list[str], required: bool) -> None:
    """Check ``files`` of a model folder against its digests before anything reads them (``required``: the config
    says the folder has digests, so a missing record is an incomplete write, not an older model)."""
    verify_digests(model_dir, files, refit_command(model_dir), required=required)


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The model's config, its bytes checked against the folder's digests first (when it has them)."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG
    if not path.is_file():
        raise HetmoeError(f"{model_dir}: no {CONFIG}; train a model with 'hetmoe fit-head --data DIR --store S --out {model_dir}'")
    recorded = (model_dir / DIGESTS).is_file()
    if recorded:
        verify_model_files(model_dir, [CONFIG], required=True)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HetmoeError(f"{path}: not valid JSON ({type(err).__name__}); the model is damaged, fit it again with "
                          f"{refit_command(model_dir)}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise HetmoeError(f"{path}: format {found!r} is not {FORMAT!r}; retrain the model with this hetmoe")
    if not recorded:  # refused when the config says the folder was written with digests; else a warning, once
        verify_model_files(model_dir, [CONFIG], required=bool(config.get("digests")))
    return resolve_paths(config, model_dir)


def save_booster(booster: Any, path: Path) -> None:
    """A LightGBM booster as model text, atomically (tmp + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    booster.save_model(str(tmp))
    os.replace(tmp, path)


def seal_model(out: Path, config: dict[str, Any], files: list[str]) -> None:
    """Write ``config.json`` (atomically: its presence marks a complete artifact), then the digests of ``files`` and
    the config. The config says digests exist, so a kill between the two reads as an incomplete folder."""
    write_json(out / CONFIG, {**config, "digests": DIGESTS})
    write_digests(out, [*files, CONFIG])


def write_model(out_dir: str | Path, kind: str, meta: dict[str, Any], heads: Sequence[Any]) -> Path:
    """Write each head's files, then config.json with every head's entry under ``heads``, then the digests
    (:func:`seal_model`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = {head.kind: head.save(out) for head in heads}
    seal_model(out, {"format": FORMAT, "kind": kind, **meta, "heads": entries}, [f for h in heads for f in h.files])
    log.info("saved %s model to %s", meta.get("variant", "?"), out)
    return out


def read_net_config(model_dir: str | Path, store_root: str | Path | None = None) -> dict[str, Any]:
    """The config of a net artifact (``store_root`` replaces the recorded one); any other kind is refused."""
    config = read_config(model_dir)
    if config.get("kind") not in ("net", "stacked"):
        raise HetmoeError(f"{model_dir} holds a {config.get('kind')} model; load it with hetmoe.moe.lgbm.LgbmModel.load")
    spec, trained = config.get("spec", {}), config.get("experts", {})
    for expert, dim in zip(spec.get("experts", []), spec.get("dims", [])):
        if trained.get(expert, {}).get("dim", dim) != dim:
            raise HetmoeError(f"{Path(model_dir) / CONFIG}: spec gives '{expert}' {dim}-d vectors, but it was trained on "
                              f"{trained[expert]['dim']}-d ones (spec.experts reordered or edited?); rebuild the model "
                              f"with {refit_command(model_dir)}")
    if store_root is not None:
        config["store_root"] = str(store_root)
    return config


def read_weights(model_dir: str | Path, config: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The weights, checked: bytes against the folder's digests, then every value finite (NaN weights score NaN).
    ``config``: the folder's, when the caller has read it already."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    config = read_config(model_dir) if config is None else config
    verify_model_files(model_dir, [WEIGHTS], required=bool(config.get("digests")))
    path = model_dir / WEIGHTS
    if not path.is_file():
        raise HetmoeError(f"{path}: missing; rebuild the model with {refit_command(model_dir)}")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise HetmoeError(f"{path}: damaged ({type(err).__name__}: {str(err)[:120]}); rebuild the model with "
                          f"{refit_command(model_dir)}") from err
    bad = [name for name, array in weights.items() if not np.isfinite(array).all()]
    if bad:
        raise HetmoeError(f"{path}: weight(s) {', '.join(bad[:3])} hold NaN or inf; rebuild the model with "
                          f"{refit_command(model_dir)}")
    return weights


def load_booster(model_dir: str | Path, name: str, config: dict[str, Any]) -> Any:
    """A LightGBM booster from ``model_dir/name``, checked before LightGBM parses it (a truncated model text aborts
    the whole process inside LightGBM): against the digests, else for its closing lines."""
    import lightgbm as lgb

    model_dir = Path(model_dir)
    path = model_dir / name
    verify_model_files(model_dir, [name], required=bool(config.get("digests")))
    if not path.is_file():
        raise HetmoeError(f"{path}: missing; rebuild the model with {refit_command(model_dir)}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not all(line in text for line in BOOSTER_END):
        raise HetmoeError(f"{path}: damaged (truncated LightGBM model text); rebuild the model with "
                          f"{refit_command(model_dir)}")
    try:
        return lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as err:
        raise HetmoeError(f"{path}: damaged ({str(err)[:120]}); rebuild the model with {refit_command(model_dir)}") from err
