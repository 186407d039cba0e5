"""``janitor.config.read_string``: the text becomes a janitor.conf file."""

import tempfile


def read_string(text: str) -> str:
    with tempfile.NamedTemporaryFile(
        "w", suffix=".conf", prefix="upstream-parity-", delete=False
    ) as f:
        f.write(text)
    return f.name
