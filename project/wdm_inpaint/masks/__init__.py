"""Synthetic healthy-mask augmentation: the label-generator GAN and the mask placer."""
