"""Named Ray Tune experiments: one small module per space, each exposing ``SPACE``
(a tune_cilp.experiment.space.SearchSpace or a tune_cilp.cilp.cilp_space.CilpSpace).

Declarations only. Adding an experiment = adding a module here; the registry
(tune_cilp.spaces) finds it by scanning this package, so nothing else needs editing.
"""
