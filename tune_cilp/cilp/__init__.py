"""CILP: contrastive image-LiDAR pre-training, then a projector, then an RGB-only classifier,
each stage a Ray Tune experiment chained by one driver (docs/CILP.md)."""
