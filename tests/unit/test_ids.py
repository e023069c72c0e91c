import time
import uuid

import pytest

from fundhub.common.ids import content_uuid, is_canonical_uuid, random_uuid, time_ordered_uuid


@pytest.mark.parametrize("name", ["", "fundhub:a\x1fb", "账户-15489516846", "x" * 500])
def test_content_uuid_is_the_standard_uuid5(name: str) -> None:
    assert content_uuid(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_random_uuid_is_a_version_4_uuid_and_does_not_repeat() -> None:
    made = {random_uuid() for _ in range(2000)}
    assert len(made) == 2000
    for text in list(made)[:50]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_canonical_form() -> None:
    assert is_canonical_uuid(str(uuid.uuid4()))
    assert not is_canonical_uuid(str(uuid.uuid4()).upper())
    assert not is_canonical_uuid("not-a-uuid")
    assert not is_canonical_uuid(uuid.uuid4().hex)


def test_time_ordered_uuid_is_a_version_7_uuid_carrying_the_time() -> None:
    before = time.time_ns() // 1_000_000
    made = [time_ordered_uuid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == 2000
    for text in made[:50]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
        assert before <= parsed.int >> 80 <= after


def test_time_ordered_uuids_sort_by_time() -> None:
    first = time_ordered_uuid()
    time.sleep(0.002)
    second = time_ordered_uuid()
    assert first < second
