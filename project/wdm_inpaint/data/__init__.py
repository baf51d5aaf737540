"""Data: BraTS cases, invertible preprocessing, split files, datasets and demo data."""
