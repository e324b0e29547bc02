"""The package version, in a module of its own so that modules inside the package can read it
without importing the package (which imports them first)."""

__version__ = "0.1.0"
