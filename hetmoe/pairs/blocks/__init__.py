"""Feature blocks: each one small module that says what it needs from the catalog and computes its columns for a
batch (:class:`~hetmoe.pairs.blocks.base.FeatureBlock`). Every module of this package is imported here, which
registers its blocks: a new block is one file, read by the tree heads once a model names it (``extra_blocks``)."""
import importlib
import pkgutil

from hetmoe.pairs.blocks.base import FeatureBlock, block_names, make_block

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FeatureBlock", "block_names", "make_block"]
