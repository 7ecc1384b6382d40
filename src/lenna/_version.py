"""The installed package version (one place, importable without circular imports)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lenna")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
