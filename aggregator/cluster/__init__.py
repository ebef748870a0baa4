"""Scale-out: several aggregator processes serve one fleet, on PostgreSQL and NATS.

* :mod:`.settings` — a cluster's settings; clustering needs PostgreSQL.
* :mod:`.bus` — this process's NATS connection and the cluster's subjects.
* :mod:`.leases` — who coordinates each event: a lease row with a fencing token.
* :mod:`.leadership` — taking, keeping, handing over and taking over event leases.
* :mod:`.directory` — which process holds which home's connection, cluster-wide.
* :mod:`.delivery` — offers, awards, cancels and ends to the process holding each home.
* :mod:`.forwarding` — bids, acks and opt-outs from a home's process to the event's coordinator.
* :mod:`.figures` — every running event's live figures, shared by every process.
* :mod:`.operator` — operator actions carried out by the event's coordinator.
* :mod:`.views` — events coordinated elsewhere, read from the database for operator views.
* :mod:`.presence` — the sessions of a process, answering presence for the whole cluster.
* :mod:`.node` — one process's part of the cluster, wired into the application.
"""
