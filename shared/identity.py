"""Identity stitching (DESIGN.md "Persons"; docs/contracts.md section 7), as pure functions.

A *link* maps an id to a userId: an ``identify`` carrying both ``anonymousId`` and
``userId`` links the anonymousId; an ``alias`` links its ``previousId`` (an anonymousId or
an earlier userId). Of all links of one id, the earliest (corrected timestamp, then
messageId) wins, so a shared device never merges two accounts and the answer does not
depend on arrival order. Links are retroactive: they re-attribute every event of the id.

``person = hop(hop(raw user key))``: two hops, so an anonymous history reaches the new
userId after an alias of the userId it was identified as (anon -> old userId -> new
userId). Longer chains stop after two hops and a cycle resolves each id to its own
second hop: both are documented limits, and both are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from eventpipe.events import user_key


class Link(NamedTuple):
    linked_id: str  # the id being stitched: an anonymousId, or a previous userId (alias)
    user_id: str  # the userId it belongs to
    linked_at: str  # the link event's corrected timestamp (ISO, sorts as text)
    message_id: str  # the link event: ties on linked_at go to the lowest messageId


def link_of(event: dict[str, Any]) -> Link | None:
    """The link an event makes, or None (not identify/alias, or nothing to stitch)."""
    kind = event.get("type")
    user = event.get("userId")
    if kind == "identify":
        linked = event.get("anonymousId")
    elif kind == "alias":
        linked = event.get("previousId")
    else:
        return None
    if not user or not linked or linked == user:
        return None
    return Link(str(linked), str(user), event["timestamp"], event["messageId"])


def earlier(a: Link, b: Link) -> Link:
    """Of two links of one id, the one that wins."""
    return a if (a.linked_at, a.message_id) <= (b.linked_at, b.message_id) else b


class Links:
    """The winning link of every id seen so far; ``person`` resolves an event."""

    def __init__(self, links: Iterable[Link] = ()) -> None:
        self.best: dict[str, Link] = {}
        for link in links:
            self.add(link)

    def add(self, link: Link) -> bool:
        """Record ``link``; True if it is now the winner for its id (it changed something)."""
        current = self.best.get(link.linked_id)
        if current is not None and earlier(current, link) == current:
            return False
        self.best[link.linked_id] = link
        return True

    def hop(self, some_id: str) -> str:
        link = self.best.get(some_id)
        return some_id if link is None else link.user_id

    def resolve(self, some_id: str) -> str:
        return self.hop(self.hop(some_id))

    def person(self, event: dict[str, Any]) -> str | None:
        """The person an event counts for (None: the event has no id at all)."""
        key = user_key(event)
        return None if key is None else self.resolve(key)

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> Links:
        """The links of deduplicated ``events`` (copies of one messageId must be removed first:
        a retried link with another corrected timestamp would otherwise count twice)."""
        return cls(link for link in map(link_of, events) if link is not None)
