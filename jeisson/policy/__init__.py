"""The home policy: what a home bids from its loads and the owner's terms, and its awards' state.

One policy for every home: the Home Assistant integration and the fleet simulator both bid with
:mod:`.bidding`, keep each load's award state as one :class:`~.awards.LoadAward` and estimate
what a load can move from its recent measured power (:mod:`.recent`). No Home Assistant imports,
no dependencies beyond the protocol.
"""
