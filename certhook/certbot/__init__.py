"""certbot's state, read-only: renewal confs, lineages under live/ and archive/, logs."""
