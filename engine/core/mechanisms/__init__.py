"""One module per trading mechanism of a technology: how its orders meet.

``continuous`` is the price-time priority book; call, English, sealed-bid and Dutch auctions
join it here, each a :class:`engine.core.market.Venue`.
"""
