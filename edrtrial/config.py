"""The configuration file (TOML), validated so that a mistake names its file and key."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator

from edrtrial.errors import ConfigError
from edrtrial.secrets import SecretRef

CONFIG_ENV = "EDRTRIAL_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///var/edrtrial.db"


class SandboxConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    state_dir: Path = Path("var/sandbox")
    alert_interval_seconds: float = Field(30.0, gt=0)
    seed: int = 7
    tenants: int = Field(3, ge=1, le=1000)


class SmtpConfig(_Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretRef | None = None
    timeout_seconds: float = Field(30.0, gt=0)


class MailConfig(_Strict):
    from_address: EmailStr
    from_name: str = ""
    outbox_dir: Path = Path("var/mail")
    smtp: SmtpConfig | None = None
    max_attempts: int = Field(8, ge=1)


class DeskConfig(_Strict):
    name: str
    email: EmailStr
    phone: str = ""
    hours: str = ""
    incident_desk_phone: str = ""


_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun) ([01]\d|2[0-3]):([0-5]\d)$")
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SchedulesConfig(_Strict):
    poll_seconds: int = Field(60, ge=5)
    inventory_minutes: int = Field(60, ge=1)
    outbox_seconds: int = Field(15, ge=1)
    parallel_tenants: int = Field(8, ge=1, le=64)
    weekly_report: str = "mon 09:00"
    trial_lifecycle: str = "06:00"

    @field_validator("weekly_report")
    @classmethod
    def _weekly(cls, value: str) -> str:
        if not _WEEKLY.match(value):
            raise ValueError("must look like 'mon 09:00' (day, then HH:MM in Asia/Tokyo)")
        return value

    @field_validator("trial_lifecycle")
    @classmethod
    def _daily(cls, value: str) -> str:
        if not _DAILY.match(value):
            raise ValueError("must look like '06:00' (HH:MM in Asia/Tokyo)")
        return value


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


class TrialConfig(_Strict):
    start: date
    end: date
    decision: Literal["undecided", "continue", "offboard"] = "undecided"

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: date, info: Any) -> date:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"trial end {value} is before its start {start}")
        return value


class ConnectionConfig(BaseModel):
    """The tenant connection; fields beyond `connector` are checked by that connector."""

    model_config = ConfigDict(extra="allow", frozen=True)
    connector: str


class CompanyConfig(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    contact_name: str = ""
    contact_email: EmailStr
    language: Literal["ja", "en"] = "ja"
    planned_seats: int = Field(ge=0)
    seat_cap: int = Field(300, ge=1)
    trial: TrialConfig
    connection: ConnectionConfig


class Settings(_Strict):
    """The whole validated configuration."""

    database: DatabaseConfig = DatabaseConfig()
    sandbox: SandboxConfig = SandboxConfig()
    mail: MailConfig
    desk: DeskConfig
    schedules: SchedulesConfig = SchedulesConfig()
    logging: LoggingConfig = LoggingConfig()
    playbooks: list[Path] = Field(default_factory=list)
    companies: list[CompanyConfig] = Field(default_factory=list)

    @field_validator("companies")
    @classmethod
    def _unique_keys(cls, value: list[CompanyConfig]) -> list[CompanyConfig]:
        seen: set[str] = set()
        tenants: set[tuple[str, str]] = set()
        for company in value:
            if company.key in seen:
                raise ValueError(f"company key {company.key!r} appears twice")
            seen.add(company.key)
            tenant = (
                company.connection.connector,
                str(getattr(company.connection, "tenant_id", "")),
            )
            if tenant[1] and tenant in tenants:
                raise ValueError(f"tenant {tenant[1]} is configured for two companies")
            tenants.add(tenant)
        return value


class Config:
    """Settings plus where they came from, so relative paths resolve beside the file."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.base_dir = path.parent

    def resolve(self, value: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        return value if value.is_absolute() else self.base_dir / value

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path anchored beside the config file."""
        url = self.settings.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(Path(url[len(prefix) :])))
        return url

    def company(self, key: str) -> CompanyConfig:
        """The company with this key, or a ConfigError listing the known keys."""
        for company in self.settings.companies:
            if company.key == key:
                return company
        known = ", ".join(c.key for c in self.settings.companies) or "none"
        raise ConfigError(f"{self.path}: no company {key!r} (configured: {known})")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(path: Path, err: ValidationError, prefix: str = "") -> str:
    lines = [f"{path}: invalid configuration"]
    for item in err.errors():
        where = _location(tuple(item["loc"]))
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def load_config(path: Path) -> Config:
    """Read and validate a config file, including each connector's own connection block."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(path, err)) from err

    from edrtrial.connectors import connector_class  # connectors validate their own block

    for index, company in enumerate(settings.companies):
        where = f"companies[{index}].connection"
        try:
            cls = connector_class(company.connection.connector)
        except ConfigError as err:
            raise ConfigError(f"{path}: {where}.connector: {err}") from err
        try:
            cls.settings_model.model_validate(company.connection.model_dump())
        except ValidationError as err:
            raise ConfigError(_describe(path, err, where)) from err
    return Config(settings, path)


def default_config_path() -> Path:
    """$EDRTRIAL_CONFIG, else ./config.toml, else the shipped ./config.example.toml."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for name in ("config.toml", "config.example.toml"):
        if Path(name).exists():
            return Path(name)
    return Path("config.toml")
