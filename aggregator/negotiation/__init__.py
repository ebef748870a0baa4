"""The negotiation: event lifecycle, offers, clearing rounds, awards, delivery, re-negotiation.

* :mod:`.state` — an event as immutable values (:class:`EventState`).
* :mod:`.machine`, :mod:`.home_steps` — every step as a pure function
  ``(state, input, env) -> StepResult`` (next state, rows to write, messages to send).
* :mod:`.driver` — one task per event: timers, its inbox, one transaction per step (or per batch
  of home messages), the new state swapped in and messages sent only after the commit; failed
  steps retried with backoff.
* :mod:`.homes` — the connected homes' views and drop-off timers.
* :mod:`.manager` — :class:`EventManager`, what the API and the sessions call.
"""

from aggregator.negotiation.driver import StoreProblem
from aggregator.negotiation.manager import EventManager
from aggregator.negotiation.messages import offer_message_id
from aggregator.negotiation.model import (
    EventNotFoundError,
    EventRequest,
    HomeLink,
    HomeView,
    InvalidTransitionError,
    NegotiationSettings,
)
from aggregator.negotiation.state import KW_EPSILON, DeliverySample, EventState

__all__ = [
    "KW_EPSILON",
    "DeliverySample",
    "EventManager",
    "EventNotFoundError",
    "EventRequest",
    "EventState",
    "HomeLink",
    "HomeView",
    "InvalidTransitionError",
    "NegotiationSettings",
    "StoreProblem",
    "offer_message_id",
]
