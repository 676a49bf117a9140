"""The operator console: `trainyard console` (docs/architecture.md §1).

Server-rendered pages (Queue, Timeline, Tenants, Tenant, Plans) over the Trainyard
API, with a little vanilla JavaScript for live updates; every call to the API goes
through the signing, allowlisted, redacting proxy (``proxy.py``).
"""

from trainyard.console.server import DEFAULT_PORT, ConsoleServer

__all__ = ["DEFAULT_PORT", "ConsoleServer"]
