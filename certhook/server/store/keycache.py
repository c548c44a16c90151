"""The writer thread's cache of active keys, reloaded when the database changed."""

from __future__ import annotations

import hmac
import time
from typing import Callable

from certhook.server.store.base import Store
from certhook.server.store.records import ActiveKey, Use
from certhook.server.store.sql_accounts import LAST_USE_EVERY, hash_key

__all__ = ["KeyCache"]


class KeyCache:
    """Active key hashes -> account names, reloaded when the database changed.

    For the writer thread, which authenticates every submission:
    :meth:`Store.accounts_version` changes when another connection commits
    (a ``keys revoke`` or ``keys rotate`` from the command line, say), so it
    takes effect at the next batch. An old key's end of overlap is checked
    at each lookup against ``clock``. Last uses are gathered in memory and
    handed out by :meth:`take_uses` for the writer's transaction, at most
    once a minute per key.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._version = -1
        self._keys: dict[bytes, ActiveKey] = {}
        self._written: dict[bytes, float] = {}  # hash -> last use written
        self._pending: dict[bytes, Use] = {}

    def refresh(self) -> None:
        version = self._store.accounts_version()
        if version != self._version:
            keys = self._store.active_keys()
            self._keys = {k.key_hash: k for k in keys}
            self._written = {k.key_hash: float(k.last_used) for k in keys
                             if k.last_used is not None}
            self._version = version

    def lookup(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hash_key(key)
        found = self._keys.get(digest)
        if found is None:
            return None
        now = self._clock()
        # Found by hash; the comparison of hashes is constant-time all the same.
        if not hmac.compare_digest(found.key_hash, digest) or (
                found.expires is not None and now >= found.expires):
            return None
        if now - self._written.get(digest, -LAST_USE_EVERY) >= LAST_USE_EVERY:
            self._pending[digest] = (found.column, found.account, now)
        return found.account

    def take_uses(self) -> list[Use]:
        """The last uses to write (in the writer's transaction), now counted as written."""
        uses = list(self._pending.values())
        for digest, (_, _, when) in self._pending.items():
            self._written[digest] = when
        self._pending.clear()
        return uses

    def flush_uses(self) -> None:
        """Write the pending last uses now (outside a batch)."""
        uses = self.take_uses()
        if uses:
            self._store.record_uses(uses)
