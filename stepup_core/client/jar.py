"""The token jar: the elevated access tokens a client holds, one per scope set (and, for tokens
bound to transaction details, per transaction)."""

from __future__ import annotations

import attrs

from ..clock import Clock, SystemClock
from ..models import IssuedToken

_Key = tuple[frozenset[str], str | None]


def _key(token: IssuedToken) -> _Key:
    return frozenset(token.scopes), token.transaction_hash


@attrs.define
class TokenJar:
    """Holds elevated access tokens keyed by their scope set and transaction hash.

    - A new token for a scope set (and transaction) replaces the one held for the same.
    - A token bound to transaction details is attached only for those details
      (``transaction_hash``), an unbound one only where no details are named.
    - An expired token is dropped the next time the jar is read.
    - A single-use token leaves the jar when it is attached to a request (:meth:`take`).

    When several held tokens cover a scope, a time-bound one is attached before a single-use
    one (so a single-use token is not spent where a reusable one does), then the one that
    lives longest.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    _tokens: dict[_Key, IssuedToken] = attrs.field(factory=dict, init=False)

    def put(self, token: IssuedToken) -> None:
        self._tokens[_key(token)] = token

    def _drop_expired(self) -> None:
        now = self.clock.now()
        for key in [k for k, t in self._tokens.items() if t.expires_at <= now]:
            del self._tokens[key]

    def _best(self, scope: str, transaction_hash: str | None) -> tuple[_Key, IssuedToken] | None:
        self._drop_expired()
        covering = [(k, t) for k, t in self._tokens.items() if scope in k[0] and t.transaction_hash == transaction_hash]
        if not covering:
            return None
        return min(covering, key=lambda item: (item[1].single_use, -item[1].expires_at))

    def peek(self, scope: str, transaction_hash: str | None = None) -> IssuedToken | None:
        """The token that would be attached for ``scope`` (and the transaction with this hash),
        leaving it in the jar."""
        best = self._best(scope, transaction_hash)
        return best[1] if best else None

    def take(self, scope: str, transaction_hash: str | None = None) -> IssuedToken | None:
        """The token to attach for ``scope`` (and the transaction with this hash); a
        single-use token leaves the jar."""
        best = self._best(scope, transaction_hash)
        if best is None:
            return None
        key, token = best
        if token.single_use:
            del self._tokens[key]
        return token

    def has_valid(self, scope: str, transaction_hash: str | None = None) -> bool:
        return self.peek(scope, transaction_hash) is not None

    def tokens(self) -> list[IssuedToken]:
        """Every valid token held."""
        self._drop_expired()
        return list(self._tokens.values())

    def discard(self, token: str) -> None:
        """Forget a token (the server refused it)."""
        for key in [k for k, t in self._tokens.items() if t.elevated_access_token == token]:
            del self._tokens[key]

    def clear(self) -> None:
        self._tokens.clear()

    def __len__(self) -> int:
        return len(self.tokens())
