"""One path for a pair's features: training, ``eval``, bulk ``score`` and the online Scorer all describe their pairs
as a :class:`~hetmoe.pairs.batch.PairBatch`, and every feature a head reads is computed from it by one feature block
(:mod:`hetmoe.pairs.blocks`) over one :class:`~hetmoe.pairs.context.FeatureContext` (the catalog's vectors, index,
item neighbourhoods and lexical model). Parity between the paths follows from there being one computation.
"""
