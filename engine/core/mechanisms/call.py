"""The call mechanism (being built: listings of it are refused as unsupported until it is)."""

from __future__ import annotations

from engine.core.venue import ListingRefusal, Venue
from engine.errors import SnapshotError
from schemas.commands import ListTechnology
from schemas.common import RejectReason


class CallKind:
    """Opens and restores call venues."""

    @staticmethod
    def open(listing: ListTechnology) -> Venue | ListingRefusal:
        return (
            RejectReason.UNSUPPORTED_MECHANISM,
            f"mechanism {listing.mechanism} is not available yet",
        )

    @staticmethod
    def restore(data: bytes) -> Venue:
        raise SnapshotError("call venues are not available yet")
