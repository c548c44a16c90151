"""The certhook audit server (``certhook serve``): receive, probe, notify, report.

``store`` (the SQLite database and the keys), ``committer`` (group commit of
submissions), ``lineserver`` (the line protocol, plain and TLS, on asyncio),
``wsgi`` and ``httpserver`` (the HTTP API and report page), ``audit`` and
``evaluate`` (the scheduler and the state of each target), ``ssrf`` (what
may be connected to), ``notify`` (email, webhook, log), ``report`` and
``queries`` (what is shown), ``config``, and ``runner`` (all of it at once).
Nothing is imported here: the hook's start-up must not pay for the server.
"""
