"""The key that signs the console's session cookies, and the file beside it that holds the
sample administrator's first password."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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


def sample_admin_file(config: Config) -> Path:
    """Where `serve --with-sandbox` writes the password of the first account it makes (owner
    only, beside the session key), since it is never printed."""
    return config.resolve(config.settings.web.key_file).parent / "console-admin.txt"


def forget_sample_password(config: Config, username: str) -> Path | None:
    """Remove that file once its account's password is changed (returns its path): kept, it
    would hold a password that no longer works, and tell anyone who reads it the old one."""
    path = sample_admin_file(config)
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return None
    if first != [f"username: {username}"]:
        return None
    path.unlink(missing_ok=True)
    return path
