"""The version of vaecli (read by the build and recorded in every checkpoint)."""

__version__ = "0.6.0"
