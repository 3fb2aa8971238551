"""The clinics' HTTP API: patients, prescriptions and sessions (issue #16).

``create_app(repository)`` builds the aiohttp application (``justwalk.api.app``);
``justwalk api`` serves it (``justwalk.api.server``). Each request carries a clinic's bearer
token (``justwalk db token issue CLINIC``); a clinic sees and changes only its own patients.
The routes are described in OpenAPI at ``GET /v1/openapi.json`` (``justwalk.api.openapi``).
"""

from __future__ import annotations

from justwalk.api.app import create_app

__all__ = ["create_app"]
