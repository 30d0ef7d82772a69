"""Data: sources, download, raw readers, the sliding-window builder, the store, batching."""
