"""OpenADR 3.1: Jeisson as a VEN toward a utility's VTN, and as a minimal VTN for third-party VENs.

``vtn`` serves the OpenADR 3.1.0 HTTP API under :data:`BASE_PATH` (programs, events, reports,
subscriptions, VENs; OAuth2 client-credentials tokens per client); ``ven`` follows a utility's VTN
and turns its events into negotiated Jeisson events (``mapping``) and reports back; ``api`` is the
operator's REST API for both; ``setup`` wires them into the aggregator's application. The OpenADR
object models are ElaadNL's ``openadr3-client`` (see docs/openadr.md for why).
"""

from __future__ import annotations

from typing import Final

OPENADR_VERSION: Final = "3.1.0"
BASE_PATH: Final = f"/openadr3/{OPENADR_VERSION}"
"""Where Jeisson's VTN answers (the reference VTN's path layout)."""
