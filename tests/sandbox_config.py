"""Config files for end-to-end tests: the shipped example, pointed at a test sandbox."""

from __future__ import annotations

from pathlib import Path

from edrtrial.sandbox import SandboxServer

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def sandbox_config(
    tmp_path: Path,
    server: SandboxServer,
    database_url: str,
    *,
    companies: int = 3,
    connection_extra: str = "",
) -> Path:
    """Write the example config, rewired to this sandbox, database and mail folder."""
    text = EXAMPLE.read_text(encoding="utf-8")
    head, *blocks = text.split("[[companies]]")
    text = head + "".join("[[companies]]" + b for b in blocks[:companies])
    text = (
        text.replace("https://127.0.0.1:8443", server.base_url)
        .replace('"var/sandbox/ca.pem"', f'"{server.ca_path}"')
        .replace("file:var/sandbox/secrets/", f"file:{server.state_dir}/secrets/")
        .replace('url = "sqlite:///var/edrtrial.db"', f'url = "{database_url}"')
        .replace('outbox_dir = "var/mail"', f'outbox_dir = "{tmp_path / "mail"}"')
    )
    if connection_extra:
        text = text.replace('connector = "defender"', f'connector = "defender"\n{connection_extra}')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path
