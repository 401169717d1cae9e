"""Decisions in words, so an operator can see why a rule did or did not fire."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edrtrial.playbooks.schema import CLASSIFICATIONS, DETERMINATIONS

if TYPE_CHECKING:
    from edrtrial.playbooks.engine import Decision, Trace
    from edrtrial.playbooks.rules import Rule

_LABELS = {
    "priority": "priority",
    "ticket": "ticket",
    "notify_desk": "notify desk",
    "notify_company": "notify company",
    "suppress": "suppressed",
    "mark_device_verified": "device verified",
    "correlate": "correlate",
    "correlate_window_minutes": "window",
    "escalate": "escalate to",
    "isolate": "isolate",
    "classification": "classification",
    "determination": "determination",
}


def explain(decision: Decision) -> str:
    """Summary, each outcome with the rule (or default) it came from, then each matched rule."""
    lines = [f"Decision: {summary(decision)}"]
    trace = decision.trace
    if trace is None:
        lines.append("Matched rules: " + (", ".join(decision.matched) or "none"))
        return "\n".join(lines)
    width = max(len(label) for label in _LABELS.values()) + 1
    for key, label in _LABELS.items():
        value, origin = _outcome(decision, trace, key)
        lines.append(f"  {label + ':':<{width}} {value:<4} {origin}".rstrip())
    if not trace.hits:
        lines.append("Matched rules: none, so every outcome comes from the defaults.")
        return "\n".join(lines)
    lines.append("Matched rules, in order:")
    for number, rule in enumerate(trace.hits, start=1):
        lines.append(f"  {number}. {rule.name} ({rule.source})")
        if rule.description:
            lines.append(f"       why: {rule.description}")
        reasons = [condition.because(trace.facts) for condition in rule.conditions]
        for reason in reasons or ["no conditions: matches every alert"]:
            lines.append(f"       - {reason}")
        won = [_LABELS[key] for key, setter in trace.set_by.items() if setter is rule]
        lines.append(
            "       sets: " + ", ".join(won)
            if won
            else "       sets nothing new: earlier rules had decided what it asks for"
        )
        if rule.stop:
            lines.append("       stop: later rules were not evaluated")
    return "\n".join(lines)


def summary(decision: Decision) -> str:
    """One line, e.g. `P1, ticket, notify desk, notify company`."""
    parts: list[str] = [decision.priority]
    if decision.suppressed_reason is not None:
        parts.append(f"suppressed ({decision.suppressed_reason})")
    parts += [
        label
        for label, on in (
            ("ticket", decision.ticket),
            ("notify desk", decision.notify_desk),
            ("notify company", decision.notify_company),
            ("device verified", decision.mark_device_verified),
        )
        if on
    ]
    if decision.isolate is not None:
        parts.append(f"isolate ({decision.isolate})")
    if decision.escalate is not None:
        parts.append(f"escalate to {decision.escalate}")
    if not decision.ticket and decision.suppressed_reason is None:
        parts.append("no ticket (periodic report only)")
    if decision.classification is not None:
        parts.append(f"verdict {verdict(decision.classification, decision.determination)}")
    return ", ".join(parts)


def verdict(classification: str, determination: str | None) -> str:
    """The stored lower-case verdict in Defender's spelling, e.g. `truePositive / malware`."""
    shown = CLASSIFICATIONS.get(classification, classification)
    if determination is None:
        return shown
    return f"{shown} / {DETERMINATIONS.get(classification, {}).get(determination, determination)}"


def _outcome(decision: Decision, trace: Trace, key: str) -> tuple[str, str]:
    """The final value of one outcome and where it came from."""
    rule = trace.set_by.get(key)
    if key == "priority":
        origin = _by(rule) if rule else _default_priority(trace)
        return decision.priority, origin
    if key == "suppress":
        reason = decision.suppressed_reason
        return ("yes", f"{reason!r} {_by(rule)}") if rule else ("no", "")
    if key in ("correlate", "correlate_window_minutes"):
        value = getattr(decision, key)
        shown = f"{value} min" if key == "correlate_window_minutes" else str(value)
        return shown, _by(rule) if rule else "default"
    if key in ("classification", "determination"):
        value = getattr(decision, key)
        if value is None:
            return "none", ""
        spelled = (
            CLASSIFICATIONS.get(value, value)
            if key == "classification"
            else DETERMINATIONS.get(decision.classification or "", {}).get(value, value)
        )
        return spelled, _by(rule)
    if key in ("escalate", "isolate"):
        return _silenceable(decision, trace, key, rule)
    final = bool(getattr(decision, key))
    value = "yes" if final else "no"
    asked = getattr(rule, key) if rule else None
    suppressor = trace.set_by.get("suppress")
    if suppressor is not None and key != "mark_device_verified":
        note = f" ({_by(rule)} asked for yes)" if asked else ""
        return value, f"suppressed {_by(suppressor)}{note}"
    return value, _by(rule) if rule else "default"


def _silenceable(decision: Decision, trace: Trace, key: str, rule: Rule | None) -> tuple[str, str]:
    """escalate / isolate: a text outcome that a suppression silences."""
    value = getattr(decision, key)
    asked = getattr(rule, key) if rule else None
    suppressor = trace.set_by.get("suppress")
    if suppressor is not None:
        note = f" ({_by(rule)} asked for {asked!r})" if asked else ""
        return "no", f"suppressed {_by(suppressor)}{note}"
    return (value, _by(rule)) if value is not None else ("no", "")


def _by(rule: Rule | None) -> str:
    return f"by rule {rule.name!r} ({rule.source})" if rule else ""


def _default_priority(trace: Trace) -> str:
    severity = trace.facts.severity.strip().casefold()
    if severity in trace.defaults.severity_priority:
        return f"default for severity {trace.facts.severity!r}"
    return f"default fallback (severity {trace.facts.severity!r} is not in the table)"
