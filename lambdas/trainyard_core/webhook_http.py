"""Data access for webhook deliveries: DNS, and HTTP to the checked addresses only.

``resolve`` returns every address a name resolves to (``webhooks/urls.py`` checks
them all), within a bound: ``getaddrinfo`` blocks and has no timeout of its own,
so it runs on a helper thread the caller stops waiting for. ``PinnedSender`` then
connects to exactly those addresses (never resolving the name again: a second
lookup is where DNS rebinding would slip in a private address), with the name as
Host header, TLS server name and the name the certificate must be valid for; no
redirects, no retries (the queue retries), no proxies, at most 64 KiB of the
answer read.

**One deadline per attempt.** A socket timeout bounds each read, not the request:
a receiver trickling a byte a second would hold an attempt (and the batch, and
the function) for as long as it likes. So every socket operation gets at most
what is left of the attempt, and a watchdog timer shuts the connection down when
the deadline passes, which ends whatever read or write is blocked on it
(the TLS handshake, the status line, the headers, the body).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from typing import Any

from trainyard_core.ports.webhooks import Response
from trainyard_core.webhooks.urls import Target

READ_MAX_BYTES = 64 * 1024
# Resolving a name for the API's PUT (the deliverer passes its attempt's deadline).
RESOLVE_DEFAULT_SECONDS = 5.0


def _getaddrinfo(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve(host: str, timeout: float | None = None) -> list[str]:
    """Every address of ``host``; OSError when it does not resolve within ``timeout``."""
    seconds = RESOLVE_DEFAULT_SECONDS if timeout is None else max(0.0, timeout)
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = _getaddrinfo(host)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    # A daemon thread, not a pool: a lookup stuck in the system resolver is left
    # behind (it ends with the resolver's own timeout) and blocks nothing else.
    worker = threading.Thread(target=lookup, name="webhook-dns", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise OSError(f"timed out resolving {host} ({seconds:.1f} s)")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["addresses"])


class _Deadline:
    """When the attempt must be over; shuts down the socket it watches then."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the attempt's deadline ({self.seconds:.1f} s) passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            expired = self.expired
        if expired:
            self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        # The plain socket's shutdown (also under an SSLSocket, without touching its
        # TLS state from this thread): a blocked recv/send in the other thread returns.
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP to one checked address, whatever the Host header names."""

    def __init__(self, target: Target, address: str, deadline: _Deadline) -> None:
        super().__init__(target.host, target.port, timeout=deadline.left())
        self._address = address
        self._deadline = deadline

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self._deadline.left())
        self._deadline.watch(sock)
        return sock

    def connect(self) -> None:
        self.sock = self._open()

    def send(self, data: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._deadline.left())
        super().send(data)


class _PinnedTlsConnection(_PinnedConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, target: Target, address: str, deadline: _Deadline) -> None:
        super().__init__(target, address, deadline)
        # The system's trust store; the certificate must be valid for the name.
        self._context = ssl.create_default_context()

    def connect(self) -> None:
        raw = self._open()
        tls = self._context.wrap_socket(
            raw, server_hostname=self.host, do_handshake_on_connect=False
        )
        self._deadline.watch(tls)
        tls.settimeout(self._deadline.left())
        tls.do_handshake()
        self.sock = tls


def _post(
    target: Target, address: str, body: bytes, headers: dict[str, str], deadline: _Deadline
) -> int:
    kind = _PinnedConnection if target.scheme == "http" else _PinnedTlsConnection
    connection = kind(target, address, deadline)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        if connection.sock is not None:
            connection.sock.settimeout(deadline.left())
        answer = connection.getresponse()
        if connection.sock is not None:
            connection.sock.settimeout(deadline.left())
        answer.read(READ_MAX_BYTES)  # bounded by the watchdog, not per read
        if deadline.expired:
            # The shutdown ends a body read as a short read, not an error.
            raise TimeoutError("the answer was cut off at the deadline")
        return answer.status
    finally:
        connection.close()


class PinnedSender:
    def send(
        self, target: Target, body: bytes, headers: dict[str, str], timeout: float
    ) -> Response:
        """POST ``body``; ``timeout`` is the attempt's deadline, for everything."""
        last_error = "no address to connect to"
        with _Deadline(timeout) as deadline:
            # At most two addresses, both within the one deadline.
            for address in target.addresses[:2]:
                try:
                    return Response(status=_post(target, address, body, headers, deadline))
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    if deadline.expired or isinstance(exc, TimeoutError):
                        return Response(
                            status=None,
                            error=f"timed out: no whole answer within the attempt's "
                            f"deadline ({timeout:.1f} s)",
                        )
                    last_error = f"{type(exc).__name__}: {exc}"
        return Response(status=None, error=last_error)
