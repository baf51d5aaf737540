"""The package version, in a leaf module so that nothing needs to import the package's front door for it."""

__version__ = "0.1.0"

__all__ = ["__version__"]
