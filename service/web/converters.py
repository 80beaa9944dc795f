"""URL converters: path numbers bounded like the columns they look up."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter, Map

from service.numbers import DB_INT_MAX


class BoundedIntConverter(IntegerConverter):
    """Flask's `int`, but ASCII digits only and at most DB_INT_MAX.

    Registered as `int`, so every `<int:…>` route answers 404 to "²", "٣" or a number
    past the database's INTEGER instead of a 500 from the driver's overflow.
    """

    regex = r"[0-9]+"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = DB_INT_MAX,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)
