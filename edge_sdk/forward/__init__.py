"""Store-and-forward of events to a ward station: MQTT, a signed webhook, FHIR R4 (one module each).

``messages`` is the wire schema (topics and payloads) shared with :mod:`edge_sdk.station`.
"""
