"""Names and numbers that several parts of certhook share: constants only, no imports.

The certbot hook reads this module on every renewal (to map ``[ports]``
entries), so it must stay free of imports and cheap to load.
"""

#: The protocol of a target that talks TLS from the first byte (no STARTTLS).
TLS = "tls"

#: The port of a target that names neither a port nor a protocol.
HTTPS_PORT = 443

#: STARTTLS protocol -> its default port. The same rows as the probe's
#: protocol table (certhook.probe.starttls.PROTOCOLS, which holds the
#: dialogues); tests/test_probe_ports.py keeps the two equal.
STARTTLS_PORTS = {
    "smtp": 25,
    "submission": 587,
    "lmtp": 24,
    "ftp": 21,
    "nntp": 119,
    "pop3": 110,
    "imap": 143,
    "sieve": 4190,
    "ldap": 389,
    "xmpp": 5222,
    "xmpp-server": 5269,
    "postgres": 5432,
    "mysql": 3306,
}

#: Every protocol name a target may carry, with its default port.
PROTOCOL_PORTS = {TLS: HTTPS_PORT, **STARTTLS_PORTS}

#: A bound on a lineage's renew_before_expiry, in seconds: 100 years (ten
#: digits). No certificate lives that long; a longer interval means "renew on
#: every run" (certhook.certbot.interval, and the protocol's renew_before).
MAX_RENEW_BEFORE = 100 * 365 * 86400
