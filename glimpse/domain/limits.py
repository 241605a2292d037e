"""The quotas and caps the services enforce, and their checks."""

from __future__ import annotations

import dataclasses

from glimpse.errors import OverLimit


@dataclasses.dataclass(frozen=True)
class Limits:
    image_size_cap: int = 1 << 40
    image_property_quota: int = 128
    image_tag_quota: int = 128
    image_member_quota: int = 128
    image_location_quota: int = 10
    user_storage_quota: int = 0
    delayed_delete: bool = False
    disk_formats: tuple[str, ...] = ()
    container_formats: tuple[str, ...] = ()
    multihash_algorithm: str = "sha512"
    upload_heartbeat_interval: float = 10.0
    stale_upload_timeout: float = 60.0

    def check_counts(self, properties: int, tags: int) -> None:
        _check("image properties", properties, self.image_property_quota)
        _check("image tags", tags, self.image_tag_quota)

    def check_locations(self, count: int) -> None:
        _check("locations per image", count, self.image_location_quota)

    def check_members(self, count: int) -> None:
        _check("image members for this image", count, self.image_member_quota)


def _check(what: str, count: int, quota: int) -> None:
    if 0 <= quota < count:
        raise OverLimit(f"The limit has been exceeded on the number of allowed {what}. "
                        f"Attempted: {count}, Maximum: {quota}")
