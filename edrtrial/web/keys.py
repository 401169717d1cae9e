"""The key that signs the console's session cookies."""

from __future__ import annotations

import os
import secrets

from edrtrial.config import Config
from edrtrial.errors import ConfigError
from edrtrial.secrets import resolve_secret


def session_key(config: Config) -> str:
    """`web.session_secret` when given; else the key kept in `web.key_file`, made (random,
    owner-only) on first start, so sessions outlive a restart and no key sits in the config
    or the store."""
    web = config.settings.web
    if web.session_secret:
        key = resolve_secret(web.session_secret, config.base_dir, "web.session_secret")
        value = key.get_secret_value()
        if len(value) < 32:
            raise ConfigError("web.session_secret: use at least 32 characters")
        return value
    path = config.resolve(web.key_file)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"web.key_file: cannot read {path}: {err}") from err
    if len(text) >= 32:
        return text
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    return text
