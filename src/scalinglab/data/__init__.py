"""Data: corpora (acquire, clean, cache), tokenizers, token shards and samplers."""

from scalinglab.data.shards import TokenDataset, WindowSampler, write_dataset

__all__ = ["TokenDataset", "WindowSampler", "write_dataset"]
