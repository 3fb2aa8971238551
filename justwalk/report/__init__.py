"""Progress reports for the therapist (issue #16 item 4): HTML and PDF.

``gather`` reads one patient's period from the database and the clinic's InfluxDB database
into a ``data.ReportData``; ``notes`` says in plain language what changed (rules in
``measures``); ``plots`` draws the figures (matplotlib, inline SVG); ``render`` fills the
Jinja2 template; ``browser`` prints the same HTML to PDF with headless Chromium. Served at
``GET /v1/patients/{id}/report?from=&to=`` (``justwalk.api``) and written by
``justwalk report`` (``cli``). Submodules are imported where used: matplotlib is loaded
only by what draws.
"""
