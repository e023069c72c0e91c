import json

from fundhub.common.db import json_text


def test_json_text_writes_what_orjson_cannot() -> None:
    for value in ({"a": [1, "收款", None, True]}, {"big": 10**30}, {1: "int key"}, "plain"):
        assert json.loads(json_text(value)) == json.loads(json.dumps(value))
