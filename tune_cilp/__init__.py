"""tune_cilp: Ray Tune experiments over RGB + LiDAR fusion models on the CILP cubes/spheres data."""

__version__ = "0.1.0"
