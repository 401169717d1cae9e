"""Secret references: config names where a secret lives, never the secret itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from edrtrial.errors import ConfigError

SCHEMES = ("env:", "file:")


def _check_reference(value: str) -> str:
    if not value.startswith(SCHEMES):
        raise ValueError(
            "must be a reference to the secret (env:VARIABLE or file:PATH), not the secret itself"
        )
    if not value.split(":", 1)[1].strip():
        raise ValueError("the reference names no variable or file")
    return value


SecretRef = Annotated[str, AfterValidator(_check_reference)]
"""A validated `env:NAME` or `file:PATH` reference."""


def resolve_secret(reference: str, base_dir: Path, what: str) -> SecretStr:
    """Read the secret a reference points at; `what` names it in errors (never the value)."""
    scheme, _, target = reference.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise ConfigError(f"{what}: environment variable {target} is not set")
        return SecretStr(value)
    path = Path(target)
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{what}: cannot read secret file {path}: {err.strerror}") from err
    if not text:
        raise ConfigError(f"{what}: secret file {path} is empty")
    return SecretStr(text)
