"""The desk's rules from the config: channels in escalation order, deadlines, business calendar."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edrtrial.config import ChannelConfig, DeskConfig, ProgrammeConfig, SlaConfig
from edrtrial.desk import sla
from edrtrial.desk.calendar import DEFAULT as DEFAULT_CALENDAR
from edrtrial.desk.calendar import BusinessCalendar


@dataclass(frozen=True, slots=True)
class DeskPolicy:
    """The desk's rules from the config: channels, deadlines and the business calendar;
    and what a printed incident report needs (the programme's letterhead, the archive).

    Without `archive_dir` (a policy built for the desk's rules alone) the incident report
    is mailed without its PDF; the service's runtime always gives one.
    """

    desk: DeskConfig
    sla: SlaConfig = field(default_factory=SlaConfig)
    calendar: BusinessCalendar = DEFAULT_CALENDAR
    programme: ProgrammeConfig = field(default_factory=ProgrammeConfig)
    archive_dir: Path | None = None

    @property
    def channels(self) -> list[ChannelConfig]:
        """Channels in escalation order."""
        return self.desk.escalation_channels()

    def channel(self, name: str) -> ChannelConfig:
        """The named channel, or the first one when the name is unknown or empty."""
        channels = self.channels
        return next((c for c in channels if c.name == name), channels[0])

    def next_channel(self, name: str) -> ChannelConfig | None:
        """The channel after `name` in escalation order; None at the end of the list."""
        channels = self.channels
        names = [c.name for c in channels]
        index = names.index(name) if name in names else 0
        return channels[index + 1] if index + 1 < len(channels) else None

    def acknowledge_by(self, priority: str, opened_at: datetime, in_trial: bool) -> datetime:
        """The acknowledgement deadline of a ticket opened (or reopened) at `opened_at`."""
        return sla.acknowledge_by(
            priority, opened_at, in_trial=in_trial, sla=self.sla, calendar=self.calendar
        )
