"""Stage two: router, concatenation-fusion head, baselines, training and evaluation over stored expert vectors.

Public entry points (import from their modules; nothing heavy is imported here):
- :func:`hetmoe.moe.fit.fit` trains the MoE (hard top-k concat) and every baseline into one model folder;
  :func:`hetmoe.moe.fit.fit_router` fits the rule router alone.
- :func:`hetmoe.moe.evaluate.evaluate` scores them on a split and writes report.json / report.md / report.png.
- :class:`hetmoe.moe.infer.MoEModel` is the numpy inference API (load, save, route, score, project_items) for serving.

Modules: spec (architecture as data), routers (one module per router kind), variants (the report's baselines),
pairstats (per-query cosine statistics), features (pairs + vectors from stores), net (torch model), train (loop),
rule (rule table fitting), select (choosing the MoE), stack / stacked (the stacked head: training / serving), lgbm
(LightGBM head), artifacts (files on disk), report. Ranking metrics live in :mod:`hetmoe.metrics`.
"""
