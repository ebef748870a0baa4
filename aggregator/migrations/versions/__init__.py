"""The revisions of the aggregator's schema, oldest first (``v<revision>_<what>.py``)."""
