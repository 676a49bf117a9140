"""The onboarding API (API Gateway REST, IAM auth): tenants, plans, runs, usage, queue.

- ``routes``: the route table (method, path, operation id, bodies, errors), once;
  the CDK app and the OpenAPI generator derive from it (no side effects on import).
- ``models``: request and response bodies.
- one router per resource (``health``, ``plans``, ``tenants``, ``runs``, ``usage``,
  ``queue``), thin: parse, call the domain services, shape JSON with ``models``.
- ``app``: the resolver that includes them and maps errors.

Adding a route: an entry in ``routes.ROUTES`` and a function bound to it in its
resource's router. This package's ``__init__`` imports nothing (the CDK app
imports ``routes``).
"""
