#!/bin/sh
# PRTG "SSH Script Advanced" sensor: copy to /var/prtg/scriptsxml/ on the
# Linux host, make it executable, and give the sensor's parameters as the
# target, e.g. "www.example.org" or "mail.example.org:25". certhook prints
# PRTG's JSON with the channels of its SSL Certificate sensor (Days to
# Expiration, Common Name Check, Public Key Length, Root Authority Trusted,
# Self-Signed) and, with --config-dir, Matches Local Certificate; and
# Renewal Overdue, whose lookup is certhook.renewaloverdue.ovl beside this
# file (copy it into PRTG's lookups\custom folder).
exec /usr/local/bin/certhook probe --format prtg --config-dir /etc/letsencrypt "$@"
