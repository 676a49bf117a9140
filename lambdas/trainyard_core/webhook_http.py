"""Data access for webhook deliveries: DNS, and HTTP to the checked addresses only.

``resolve`` returns every address a name resolves to (``webhooks/urls.py`` checks
them all). ``PinnedSender`` then connects to exactly those addresses (never
resolving the name again: a second lookup is where DNS rebinding would slip in a
private address), with the name as Host header, TLS server name and the name the
certificate must be valid for; no redirects, no retries (the queue retries), no
proxies, short connect and read timeouts, at most 64 KiB of the answer read.
"""

from __future__ import annotations

import socket

import urllib3
from urllib3.exceptions import HTTPError

from trainyard_core.ports.webhooks import Response
from trainyard_core.webhooks.urls import Target

READ_MAX_BYTES = 64 * 1024


def resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _pool(target: Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "http":  # the embedded stack's loopback receivers only
        return urllib3.HTTPConnectionPool(address, target.port, timeout=limits, retries=False)
    return urllib3.HTTPSConnectionPool(
        address,
        target.port,
        timeout=limits,
        retries=False,
        cert_reqs="CERT_REQUIRED",
        server_hostname=target.host,
        assert_hostname=target.host,
    )


class PinnedSender:
    def send(
        self, target: Target, body: bytes, headers: dict[str, str], timeout: float
    ) -> Response:
        host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        last_error = "no address to connect to"
        # At most two addresses: each may take two timeouts (connect, read) and the
        # function has 30 s for a whole batch.
        for address in target.addresses[:2]:
            pool = _pool(target, address, timeout)
            try:
                answer = pool.urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers={**headers, "Host": host},
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                )
                try:
                    answer.read(READ_MAX_BYTES)
                finally:
                    answer.release_conn()
                return Response(status=answer.status)
            except HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            finally:
                pool.close()
        return Response(status=None, error=last_error)
