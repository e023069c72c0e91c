import json

from fundhub.common.db import json_text, json_value


def test_json_text_writes_what_orjson_cannot() -> None:
    for value in ({"a": [1, "收款", None, True]}, {"big": 10**30}, {1: "int key"}, "plain"):
        assert json.loads(json_text(value)) == json.loads(json.dumps(value))


def test_json_value_reads_what_orjson_cannot() -> None:
    for value in ({"a": [1, "收款", None, True, 1.5]}, {"big": 10**30}, {"neg": -(10**25)}, []):
        assert json_value(json_text(value)) == value
