"""The quota checks (domain/quotas.py): what a create or an upload's claim is admitted with,
the refusals' wording, and /v2/info/usage's document."""

from __future__ import annotations

import pytest

from glimpse.domain.quotas import (
    IMAGE_COUNT_TOTAL,
    IMAGE_COUNT_UPLOADING,
    IMAGE_SIZE_TOTAL,
    IMAGE_STAGE_TOTAL,
    Admission,
    MiB,
    StaticLimits,
    Usage,
    report,
)
from glimpse.errors import OverLimit

GLANCE_413 = ("The request returned a 413 Request Entity Too Large. This generally means "
              "that rate limiting or a quota threshold was breached.\n\nThe response body:\n")
LIMITS = {IMAGE_SIZE_TOTAL: MiB, IMAGE_STAGE_TOTAL: 0, IMAGE_COUNT_TOTAL: 2,
          IMAGE_COUNT_UPLOADING: 1}


def test_static_limits_are_user_storage_quota_and_nothing_else() -> None:
    assert StaticLimits(0).limits("p") == dict.fromkeys(LIMITS)
    assert StaticLimits(10).limits("p")[IMAGE_SIZE_TOTAL] == 10
    assert not StaticLimits(10).unified


def test_a_create_counts_the_new_image() -> None:
    admit = Admission("p", LIMITS, new_image=True, upload=False)
    assert admit.needed and admit.bounds_uploads
    assert admit(Usage(count_total=2)) is None  # the new image makes 2 of 2
    with pytest.raises(OverLimit) as refused:
        admit(Usage(count_total=3))
    assert refused.value.message == (
        f"{GLANCE_413}Project p is over a limit for [Resource image_count_total is over limit "
        "of 2 due to current usage 2 and delta 1]")


def test_an_upload_counts_itself_and_reserves_what_remains() -> None:
    admit = Admission("p", LIMITS, new_image=False, upload=True)
    assert admit(Usage(count_uploading=1, size_total=MiB // 4)) == MiB - MiB // 4
    assert admit.granted == MiB - MiB // 4 and admit.used == MiB // 4
    with pytest.raises(OverLimit, match="image_count_uploading is over limit of 1 due to "
                                        "current usage 1 and delta 1"):
        admit(Usage(count_uploading=2))
    # Nothing left: refused before any byte.
    with pytest.raises(OverLimit, match="image_size_total is over limit of 1 due to current "
                                        "usage 1 and delta 1"):
        admit(Usage(count_uploading=1, size_total=MiB))


def test_a_declared_length_is_reserved_exactly_and_refused_when_over() -> None:
    admit = Admission("p", LIMITS, new_image=False, upload=True, declared=1000)
    assert admit(Usage(count_uploading=1)) == 1000
    over = Admission("p", LIMITS, new_image=False, upload=True, declared=MiB + 1)
    with pytest.raises(OverLimit, match="usage 0 and delta 2"):
        over(Usage(count_uploading=1))
    # An empty upload fits a full project.
    empty = Admission("p", LIMITS, new_image=False, upload=True, declared=0)
    assert empty(Usage(count_uploading=1, size_total=MiB)) == 0


def test_unlimited_needs_no_check() -> None:
    unlimited = dict.fromkeys(LIMITS)
    admit = Admission("p", unlimited, new_image=True, upload=True)
    assert not admit.needed and not admit.bounds_uploads
    assert admit(Usage(count_total=10**6, count_uploading=10**6, size_total=10**15)) is None


def test_user_storage_quota_keeps_its_own_words() -> None:
    admit = Admission("p", StaticLimits(10).limits("p"), new_image=False, upload=True,
                      unified=False)
    with pytest.raises(OverLimit, match="exceeds the quota: the remaining storage quota is "
                                        "4 bytes of 10"):
        Admission("p", StaticLimits(10).limits("p"), new_image=False, upload=True,
                  declared=5, unified=False)(Usage(size_total=6))
    assert admit(Usage(size_total=6)) == 4


def test_report_is_in_glances_units() -> None:
    usage = Usage(count_total=2, count_uploading=1, size_total=MiB + MiB // 2)
    assert report({**LIMITS, IMAGE_SIZE_TOTAL: 3 * MiB, IMAGE_STAGE_TOTAL: None}, usage) == {
        "image_size_total": {"limit": 3, "usage": 1},
        "image_stage_total": {"limit": -1, "usage": 0},
        "image_count_total": {"limit": 2, "usage": 2},
        "image_count_uploading": {"limit": 1, "usage": 1},
    }


def test_a_stage_is_held_to_image_stage_total_not_image_size_total() -> None:
    limits = {**LIMITS, IMAGE_STAGE_TOTAL: 2 * MiB, IMAGE_SIZE_TOTAL: 0}
    admit = Admission("p", limits, new_image=False, upload=False, stage=True)
    assert admit.needed
    # The full image_size_total does not bound staging; staged bytes do.
    assert admit(Usage(count_uploading=1, size_total=10 * MiB, stage_total=MiB)) == MiB
    assert admit.used == MiB
    with pytest.raises(OverLimit) as refused:
        admit(Usage(count_uploading=1, stage_total=2 * MiB))
    assert refused.value.message == (
        f"{GLANCE_413}Project p is over a limit for [Resource image_stage_total is over limit "
        "of 2 due to current usage 2 and delta 1]")
    with pytest.raises(OverLimit, match="image_count_uploading"):
        admit(Usage(count_uploading=2))
    unbounded = Admission("p", {**LIMITS, IMAGE_STAGE_TOTAL: None, IMAGE_COUNT_UPLOADING: None},
                          new_image=False, upload=False, stage=True)
    assert not unbounded.needed
