"""v2 list parameters (spec §2.3): the query string as a domain ListQuery."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

from glimpse.domain.model import Image, ListQuery
from glimpse.errors import Invalid


@dataclasses.dataclass
class V2List:
    query: ListQuery
    marker: str | None


def parse_list_query(params: list[tuple[str, str]], default_limit: int,
                     max_limit: int) -> V2List:
    query = ListQuery(limit=default_limit)
    marker = None
    for key, value in params:
        if key == "limit":
            if not value.isdigit():
                raise Invalid("limit param must be a positive integer")
            query.limit = min(int(value), max_limit)
        elif key == "marker":
            marker = value
    return V2List(query, marker)


def page_links(params: list[tuple[str, str]], page: list[Image],
               limit: int) -> tuple[str, str | None]:
    kept = [(k, v) for k, v in params if k != "marker"]
    first = "/v2/images" + (f"?{urlencode(kept)}" if kept else "")
    if not page or len(page) < limit:
        return first, None
    return first, "/v2/images?" + urlencode([*kept, ("marker", page[-1].id)])
