"""Write the gateway's OpenAPI document (the API's one source of truth) to a file."""

from __future__ import annotations

import json
import sys

from fundhub.common.config import Settings
from fundhub.gateway.app import create_app


def main() -> None:
    app = create_app(Settings(master_key="A" * 43 + "="))
    target = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        with open(target, "w", encoding="utf-8") as out:
            out.write(text)


if __name__ == "__main__":
    main()
