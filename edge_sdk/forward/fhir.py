"""FHIR R4: an alert becomes an Observation (the smoothed PSPI) and a DetectedIssue, in one transaction.

``alert_raised`` -> a ``transaction`` Bundle POSTed to ``[forward.fhir] base_url`` with

* an **Observation**: ``status`` final, ``category`` exam, ``code`` = the local code ``pspi`` of the code
  system :data:`CODE_SYSTEM` (no LOINC or SNOMED CT code exists for the Prkachin and Solomon Pain Intensity
  score; the text names it), ``valueQuantity`` in ``{score}`` (UCUM), ``effectiveDateTime``, the device as
  ``device.identifier`` (the pseudonymous ``device_id``; the hospital maps bed -> patient, the device never
  knows the patient), a note when the model card says the weights are a synthetic demo;
* a **DetectedIssue**: ``status`` preliminary (a machine's finding, for a person to confirm), ``code`` =
  SNOMED CT 22253000 *Pain (finding)*, ``severity`` moderate, ``identifiedDateTime``, ``author`` the device,
  ``evidence`` -> the Observation. (R4 ``Flag`` needs a subject, i.e. the patient, which the device must not
  hold; DetectedIssue does not.)

``alert_cleared`` -> an Observation only. Both entries are conditional creates (``ifNoneExist`` on the
identifier ``urn:edge-sdk:event|<event id>``), so a redelivered event creates nothing twice. Bearer token
from ``token_file``; a 2xx response marks the event delivered. Standard library only (``urllib.request``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

from edge_sdk.forward import messages as m
from edge_sdk.forward.base import Check, HttpForwarder, endpoint_checks, post, read_secret, tls_context

if TYPE_CHECKING:
    from edge_sdk.pipeline.config import FhirSettings, ForwardSettings

#: The local code system of edge-sdk observations (documented in README "Forwarding"): code ``pspi``.
CODE_SYSTEM = "urn:edge-sdk:fhir:codes"
EVENT_ID_SYSTEM = "urn:edge-sdk:event"
DEVICE_ID_SYSTEM = "urn:edge-sdk:device"
SNOMED = "http://snomed.info/sct"
PAIN_FINDING = {"system": SNOMED, "code": "22253000", "display": "Pain (finding)"}
PSPI_CODE = {
    "system": CODE_SYSTEM,
    "code": "pspi",
    "display": "Prkachin and Solomon Pain Intensity (PSPI), automated facial estimate, smoothed",
}
FHIR_EVENTS = frozenset({"alert_raised", "alert_cleared"})


def _device(device_id: str) -> dict[str, Any]:
    return {"identifier": {"system": DEVICE_ID_SYSTEM, "value": device_id}, "display": device_id}


def observation(event: m.Event, *, synthetic: bool = False) -> dict[str, Any]:
    """The Observation of an alert event's smoothed PSPI (see the module docstring)."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": EVENT_ID_SYSTEM, "value": event.id}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "exam",
                        "display": "Exam",
                    }
                ]
            }
        ],
        "code": {"coding": [PSPI_CODE], "text": "PSPI pain score (automated)"},
        "effectiveDateTime": m.iso_time(event.time),
        "device": _device(event.device_id),
        "interpretation": [{"text": event.event.replace("_", " ")}],
    }
    if event.pspi is not None:
        obs["valueQuantity"] = {
            "value": event.pspi,
            "unit": "score",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        }
    else:
        obs["dataAbsentReason"] = {"text": "no score at this event"}
    if synthetic:
        obs["note"] = [{"text": "Synthetic demo model: the score means nothing on real people."}]
    return obs


def detected_issue(event: m.Event, observation_url: str) -> dict[str, Any]:
    """The DetectedIssue of an ``alert_raised`` event, its evidence the Observation at ``observation_url``."""
    pspi = f" (PSPI {event.pspi:g})" if event.pspi is not None else ""
    return {
        "resourceType": "DetectedIssue",
        "identifier": [{"system": EVENT_ID_SYSTEM, "value": event.id}],
        "status": "preliminary",
        "code": {"coding": [PAIN_FINDING], "text": "Pain alert from a bedside monitor"},
        "severity": "moderate",
        "identifiedDateTime": m.iso_time(event.time),
        "author": _device(event.device_id),
        "detail": f"Bedside pain monitor {event.device_id}: pain alert raised{pspi}; please assess the patient.",
        "evidence": [{"detail": [{"reference": observation_url}]}],
    }


def bundle(event: m.Event, *, synthetic: bool = False) -> dict[str, Any]:
    """The transaction Bundle for ``event`` (conditional creates keyed on the event id)."""
    obs_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'observation:' + event.id)}"
    condition = f"identifier={EVENT_ID_SYSTEM}|{event.id}"
    entries = [
        {
            "fullUrl": obs_url,
            "resource": observation(event, synthetic=synthetic),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition},
        }
    ]
    if event.event == "alert_raised":
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'issue:' + event.id)}",
                "resource": detected_issue(event, obs_url),
                "request": {"method": "POST", "url": "DetectedIssue", "ifNoneExist": condition},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class FhirForwarder(HttpForwarder):
    """POSTs alert bundles to a FHIR R4 server (see the module docstring)."""

    name = "fhir"

    def __init__(self, settings: FhirSettings, forward: ForwardSettings, synthetic: bool = False) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or "").rstrip("/")
        self.token = read_secret(settings.token_file, "forward.fhir", "token_file") if settings.token_file else None
        self.synthetic = synthetic
        super().__init__(tls_context(settings.ca_file) if self.base_url.startswith("https://") else None)

    def wants(self, event: m.Event) -> bool:
        return event.event in FHIR_EVENTS

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def deliver(self, event: m.Event) -> None:
        body = json.dumps(bundle(event, synthetic=self.synthetic)).encode()
        request = urllib.request.Request(self.base_url, data=body, headers=self._headers(), method="POST")
        post(self._opener, request, self.base_url, self.settings.timeout_s)

    def check(self, timeout: float = 5.0) -> list[Check]:
        checks = endpoint_checks(self.base_url, self.context, timeout)
        if not all(c.ok for c in checks if c.step != "tls" or self.context):
            return checks
        request = urllib.request.Request(f"{self.base_url}/metadata", headers=self._headers(), method="GET")
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return [*checks, Check("auth", False, f"GET /metadata: HTTP {exc.code} {exc.reason}")]
        except (urllib.error.URLError, OSError) as exc:
            return [*checks, Check("auth", False, f"GET /metadata: {getattr(exc, 'reason', exc)}")]
        ms = (time.monotonic() - started) * 1000
        return [*checks, Check("auth", 200 <= status < 300, f"GET /metadata: HTTP {status} in {ms:.0f} ms")]
