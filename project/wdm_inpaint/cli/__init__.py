"""Command-line interface: ``wdm-inpaint <command>``; one module per command."""
