"""The Prometheus scrape endpoint: ``path("metrics", sagas.views.metrics_view)`` in the project's URLconf."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from sagas import collectors
from sagas.conf import sagas_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every ``sagas_*`` metric, summed over all processes when ``PROMETHEUS_MULTIPROC_DIR`` is set, in the
    Prometheus text format. Answers 403 unless the caller presents ``SAGAS["METRICS_TOKEN"]`` as a bearer token or
    its address is in ``SAGAS["METRICS_ALLOWED_IPS"]`` (loopback by default; None: every address)."""
    allowed = sagas_settings.METRICS_ALLOWED_IPS
    if not token_presented(request) and (
        allowed is not None and not address_allowed(request.META.get("REMOTE_ADDR", ""), networks(allowed))
    ):
        return HttpResponseForbidden(
            "This address may not read the metrics: see SAGAS['METRICS_ALLOWED_IPS'] and SAGAS['METRICS_TOKEN'].\n",
            content_type="text/plain",
        )
    # generate_latest writes the classic text format, version 0.0.4 (what prometheus-client's own handlers
    # send when the scraper does not ask for another).
    return HttpResponse(generate_latest(collectors.scrape_registry()), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def token_presented(request: HttpRequest) -> bool:
    """Whether the request carries ``Authorization: Bearer <SAGAS["METRICS_TOKEN"]>`` (compared in constant time)."""
    token = sagas_settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), str(token).encode())


def networks(entries: Iterable[str]) -> list[Network]:
    """The networks of SAGAS["METRICS_ALLOWED_IPS"]: addresses ("10.0.0.5") and networks ("10.0.0.0/8")."""
    if isinstance(entries, str):
        raise ImproperlyConfigured(
            f"SAGAS['METRICS_ALLOWED_IPS'] must be a list of addresses or networks, not the string {entries!r}."
        )
    try:
        return [ipaddress.ip_network(entry, strict=False) for entry in entries]
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"SAGAS['METRICS_ALLOWED_IPS'] holds something that is not an IP address or network: {exc}"
        ) from exc


def address_allowed(address: str, allowed: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 from a server listening on IPv6
    return any(ip in network for network in allowed)
