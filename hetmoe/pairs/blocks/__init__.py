"""Feature blocks: each one small module that says what it needs from the catalog and computes its columns for a
batch (:class:`~hetmoe.pairs.blocks.base.FeatureBlock`). Importing this package registers every block."""
from hetmoe.pairs.blocks import lexical, neighbourhood, stats  # noqa: F401  (registers the blocks)
from hetmoe.pairs.blocks.base import FeatureBlock, block_names, make_block

__all__ = ["FeatureBlock", "block_names", "make_block"]
