"""A home's connection to its aggregator: enrolment, the websocket session, requests, outbox."""

from jeisson.client.client import (
    ConnectionCallback,
    Enrollment,
    HomeClient,
    MessageCallback,
    QueuedMessage,
    enroll,
)

__all__ = [
    "ConnectionCallback",
    "Enrollment",
    "HomeClient",
    "MessageCallback",
    "QueuedMessage",
    "enroll",
]
