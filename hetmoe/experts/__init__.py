"""Embedding experts: cards (``card``), the encoder protocol (``base``) and backend lookup (``registry``).

Importing this package is cheap: model libraries load only when :func:`build_encoder` needs them.
"""
from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard, default_experts, get_card, load_cards
from hetmoe.experts.registry import build_encoder, register_backend

__all__ = [
    "Encoder", "ExpertCard", "build_encoder", "default_experts", "get_card", "load_cards", "register_backend",
]
