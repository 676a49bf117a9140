"""Tenant webhooks: Trainyard's events delivered, signed, to a URL each tenant sets.

- ``urls``: which URLs may be called (https to public addresses only: no SSRF);
- ``signing``: the ``Trainyard-Signature`` scheme (docs/events.md#webhooks);
- ``service``: the API's use cases (set, show, delete, list deliveries);
- ``delivery``: the deliverer's use case (one queued event -> one attempt).

Pure: the stores, the secrets, DNS and HTTP are ports (``ports/webhooks.py``).
"""
