"""Jeisson: residential demand response — wire protocol, home client and aggregator server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jeisson")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
