"""The web server's front door: which requests may change anything, and the page's headers.

Every request that changes state (ingest, alarm actions) must:

- name an allowed host in ``Host`` (loopback names, ``web.host``, ``web.allowed_hosts``): a
  page on another site whose name resolves to this worker (DNS rebinding) is refused;
- come from no ``Origin`` (devices, scripts) or an allowed one: a form or ``fetch`` on a
  foreign site (CSRF) is refused, even with a ``text/plain`` body;
- carry JSON (``application/json``, ``application/fhir+json``) when it has a body.

Refusals are 403 (host, origin) and 415 (type) with a one-line reason.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from faust.web import Request

from ..settings import WebSettings

JSON_TYPES = frozenset({"application/json", "application/fhir+json"})

#: Headers of the care-team page: no framing, scripts and data from this server only.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _host_name(value: str) -> str:
    """The host name of a ``Host`` header or an origin URL, lower case, without port."""
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    host = value.strip().lower()
    if host.startswith("["):  # [::1]:6066
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def content_type(request: Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def refusal(request: Request, settings: WebSettings, *, has_body: bool) -> tuple[int, str] | None:
    """(status, reason) when a state-changing request must be refused, else None."""
    hosts = settings.hosts
    host = request.headers.get("Host", "")
    if host and _host_name(host) not in hosts:
        return 403, "Host is not one this server answers to (BEDSIDE_WEB__ALLOWED_HOSTS)"
    origin = request.headers.get("Origin")
    if origin is not None and _host_name(origin) not in hosts:
        return 403, "cross-site request refused: Origin is not an allowed host"
    if has_body and content_type(request) not in JSON_TYPES:
        return 415, f"Content-Type must be one of {', '.join(sorted(JSON_TYPES))}"
    return None
