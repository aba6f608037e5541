"""The lowest layer: one-line errors, atomic writes, checkpoint I/O, the metric schema and
FiftyOne's environment. It imports nothing else of tune_cilp (docs/ARCHITECTURE.md)."""
