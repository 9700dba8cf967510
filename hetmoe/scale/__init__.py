"""Scale-out: ``embed --engine ray`` and bulk ``score`` over a Ray Data actor pool (Ray is imported only here)."""
