"""Data: BraTS cases, invertible preprocessing, split files and datasets."""
