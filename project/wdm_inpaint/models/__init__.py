"""Neural networks (pure ``nn.Module``s): the wavelet-space U-Net."""
