"""Wire models of the native API (never domain objects or rows), one module per concept:

- ``base``: ``Strict`` (unknown fields refused), the JSON depth guard, ``ErrorOut``
- ``jobs``: submitting, reading, listing, cancelling and retrying jobs, their events
  and attempts; ``definitions``: job definitions (they share ``RunOptions`` with jobs)
- ``registry``: models, model versions and environments
- ``folders``, ``results``, ``notifications``, ``monitoring``
- ``admin``: tenants, fair share, projects, API keys, the audit log
- ``system``: ``/v1/system/status``

The compatibility APIs keep their own wire models in ``api/compat``.
"""
