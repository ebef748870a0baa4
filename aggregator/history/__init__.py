"""History for the operator dashboard: what happened, when, from stored records.

* :mod:`.recorder` — samples the fleet and the running events into the database, and notes when
  homes went offline, for the server's whole life.
* :mod:`.index` — every home in memory for search, filters, sorting and paging (10,000 homes).
* :mod:`.queries` — an event's chart and activity, a round's bid curve, an event's homes
  (committed vs delivered), the fleet over time.
* :mod:`.models` — the answers (pydantic; their schemas are in the OpenAPI document).
* :mod:`.routes` — the REST routes; :func:`~.routes.setup` adds them to the application.
* :mod:`.tables` — ``fleet_samples`` and ``event_samples`` (migration 0007).
"""
