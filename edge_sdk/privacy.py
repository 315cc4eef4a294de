"""What a result record may never carry into a log: one list for every sink that writes to disk.

Landmark geometry is face biometry that pain monitoring does not need once the AUs are computed, so
the encrypted log (:mod:`edge_sdk.store.records`) and the plain JSON-lines log
(:class:`edge_sdk.pipeline.sinks.JsonLinesSink`) both drop these keys, at any depth, before writing.
"""

EXCLUDED_FIELDS: frozenset[str] = frozenset({"landmarks"})
