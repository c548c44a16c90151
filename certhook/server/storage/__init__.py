"""The database beneath the audit server: schema, URLs, PostgreSQL, migrate and copy.

(To be joined with ``certhook/server/store/``.) Modules import each other
relatively, so that the package can move as a whole.
"""
