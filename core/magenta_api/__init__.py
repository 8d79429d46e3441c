"""magenta-api: a plugin-based REST service for Magenta's symbolic-music models, on NumPy."""

__version__ = "0.1.0"
