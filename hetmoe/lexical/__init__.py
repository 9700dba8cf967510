"""The lexical expert: BM25, char n-gram TF-IDF and token-overlap features, fitted on the catalog in stage one."""

from hetmoe.lexical.config import LexicalConfig
from hetmoe.lexical.features import FEATURE_NAMES
from hetmoe.lexical.model import LexicalModel

__all__ = ["FEATURE_NAMES", "LexicalConfig", "LexicalModel"]
