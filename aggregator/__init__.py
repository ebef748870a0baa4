"""Jeisson's aggregator: the server that negotiates demand response with many homes.

Sessions, negotiation, storage, the operator API and dashboard, settlement, the CLI and the
fleet simulator. Published as ``jeisson-aggregator``; it speaks the protocol of the home-side
library ``jeisson`` (``jeisson.common``), which is all Home Assistant installs.
"""

from jeisson import __version__

__all__ = ["__version__"]
