"""The command-line layer: one thin module per command, no torch/polars at import time."""
