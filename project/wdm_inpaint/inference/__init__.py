"""Inference: the ``Inpainter`` front door and robust folder-in, folder-out runs."""
