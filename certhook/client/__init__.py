"""The reporting client: what certbot changed, and getting it to the audit server.

``config`` (where the server is, the key; ``ini`` reads certhook's INI
file, for the probe too), ``changes`` (what to report),
``submit`` (requests, delivery, settling), ``transport`` (line over TCP or
TLS, the HTTPS fallback), ``spool`` (what waits for the server), and
``dropins/`` (the bash drop-in hooks, shipped as package data). Nothing is
imported here: the certbot hook loads only the modules it uses.
"""
