"""Training: configs, the trainer loop, checkpoints and logging."""
