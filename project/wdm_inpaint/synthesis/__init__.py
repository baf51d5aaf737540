"""Synthetic training and demo cases: brain templates on the BraTS grid, random subjects and masks."""
