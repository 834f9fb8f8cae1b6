"""`handoffs.yml`: kinds, routes, review rule, SLA, nudges, webhooks (SPEC §4).

Every error names its path in the file (`routes[1].when.urgency: ...`), so that
`handoff-bot check-config` can list them all at once.
"""

from __future__ import annotations

import difflib
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from handoffs.durations import MAX_DURATION, format_duration, parse_duration
from handoffs.model import (
    CHANNEL_ID_PATTERN,
    USER_ID_PATTERN,
    USERGROUP_ID_PATTERN,
    ChannelId,
    Urgency,
    UsergroupId,
    UserId,
    check_callback_url,
)


def _duration(value: Any) -> timedelta:
    """Only `30s`, `15m`, `4h`, `3d` from the file: a bare number (YAML `60`, `-60.0`, `1.0e+13`) is refused
    rather than read as seconds, so every duration is positive and short enough for deadline arithmetic."""
    if not isinstance(value, timedelta):
        return parse_duration(value)
    if not timedelta(0) < value <= MAX_DURATION:
        raise ValueError(f"must be more than 0s and at most {MAX_DURATION.days}d")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]

WebhookEvent = Literal["created", "claimed", "approved", "edited", "rejected", "closed", "escalated"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
DEFAULT_OUTCOMES = ["done", "no_action", "duplicate"]
# A handoff that requires approval may still be closed before approval with one of these.
NON_COMPLETING_OUTCOMES = frozenset({"no_action", "duplicate"})


class Weekday(StrEnum):
    mon = "mon"
    tue = "tue"
    wed = "wed"
    thu = "thu"
    fri = "fri"
    sat = "sat"
    sun = "sun"


WEEKDAY_INDEX = {day: index for index, day in enumerate(Weekday)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NOT_A_CLOCK = "must be a time of day from 00:00 to 23:59, such as 09:00"


def _clock(value: Any) -> Any:
    if isinstance(value, (bool, float)):
        raise ValueError(_NOT_A_CLOCK)
    if isinstance(value, int):  # YAML reads an unquoted 09:00 as a sexagesimal integer (and 24:30 as 1470)
        if not 0 <= value < 24 * 60:
            raise ValueError(_NOT_A_CLOCK)
        return time(value // 60, value % 60)
    return value


def _local_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("must be a time of day without a UTC offset: `timezone` says whose clock it is")
    return value


Clock = Annotated[time, BeforeValidator(_clock), AfterValidator(_local_clock)]


class BusinessHours(_Strict):
    days: list[Weekday] = Field(default_factory=lambda: [Weekday(d) for d in ("mon", "tue", "wed", "thu", "fri")])
    start: Clock = time(9, 0)
    end: Clock = time(18, 0)

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.end <= self.start:
            raise ValueError("end must be later than start")
        if not self.days:
            raise ValueError("days must name at least one day")
        return self


class Review(_Strict):
    confidence_below: float | None = Field(default=0.7, ge=0, le=1)
    channel: ChannelId | None = None
    approvers: list[UserId] = Field(default_factory=list)


KindName = Annotated[str, Field(min_length=1, max_length=50)]  # what a handoff's `kind` may be (SPEC §2)


class Kind(_Strict):
    label: str | None = None
    required_facts: list[str] = Field(default_factory=list)
    intents: list[str] = Field(default_factory=list)
    outcomes: list[str] = Field(default_factory=list)
    requires_approval: bool = False
    close_on_approve: bool = False


BUILTIN_KINDS: dict[str, Kind] = {
    "task": Kind(label="Task"),
    "intake": Kind(label="Intake"),
    "lead": Kind(
        label="Lead",
        required_facts=["company"],
        outcomes=["won", "lost", "nurture", "disqualified"],
    ),
    "reply": Kind(label="Reply for approval", requires_approval=True, close_on_approve=True),
    "support": Kind(label="Support", outcomes=["resolved", "no_action", "duplicate"]),
}


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


OneOrMany = Annotated[list[str], BeforeValidator(_one_or_many)]


class When(_Strict):
    kind: OneOrMany | None = None
    urgency: Annotated[list[Urgency], BeforeValidator(_one_or_many)] | None = None
    intent: OneOrMany | None = None
    source_system: OneOrMany | None = None

    @property
    def is_catch_all(self) -> bool:
        return not (self.kind or self.urgency or self.intent or self.source_system)


class OwnerPool(_Strict):
    round_robin: list[UserId] = Field(min_length=1)


class SlaRule(_Strict):
    claim: Duration
    resolve: Duration


class Route(_Strict):
    name: str = Field(min_length=1, max_length=80)
    when: When = Field(default_factory=When)
    channel: ChannelId | None = None
    owner: UserId | None = None
    owners: OwnerPool | None = None
    queue: UsergroupId | None = None
    approvers: list[UserId] = Field(default_factory=list)
    claimers: list[UserId] | None = None
    requires_approval: bool | None = None
    sla: dict[Urgency, SlaRule] | None = None
    escalate_to: ChannelId | UserId | None = None

    @model_validator(mode="after")
    def _one_owner_rule(self) -> Route:
        if self.owner and self.owners:
            raise ValueError("set either owner or owners, not both")
        if self.queue and (self.owner or self.owners):
            raise ValueError("set one owner rule: owner, owners or a user group queue, not a person and a queue")
        return self


DEFAULT_SLA: dict[Urgency, SlaRule] = {
    Urgency.urgent: SlaRule(claim=timedelta(minutes=15), resolve=timedelta(hours=4)),
    Urgency.high: SlaRule(claim=timedelta(hours=1), resolve=timedelta(days=1)),
    Urgency.normal: SlaRule(claim=timedelta(hours=4), resolve=timedelta(days=3)),
    Urgency.low: SlaRule(claim=timedelta(days=1), resolve=timedelta(days=7)),
}


class Nudges(_Strict):
    check_every: Duration = timedelta(minutes=1)
    repeat_every: Duration = timedelta(hours=1)
    max_nudges: int = Field(default=3, ge=0, le=100)
    escalate_to: ChannelId | UserId | None = None
    business_hours_only: bool = False

    @field_validator("check_every", "repeat_every")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


class Webhook(_Strict):
    url: str
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_callback_url(value)


class IntakeChannel(_Strict):
    channel: ChannelId
    producers: list[Annotated[str, Field(pattern=r"^[BUW][A-Z0-9]{2,20}$")]] = Field(min_length=1)


class Digest(_Strict):
    channel: ChannelId
    at: Clock = time(9, 0)


class Dedupe(_Strict):
    window: Duration = timedelta(hours=24)


class HandoffConfig(_Strict):
    timezone: str = "UTC"
    business_hours: BusinessHours | None = None
    managers: list[UserId] = Field(default_factory=list)
    review: Review = Field(default_factory=Review)
    kinds: dict[KindName, Kind] = Field(default_factory=dict, validate_default=True)
    routes: list[Route] = Field(default_factory=list)
    fallback_route: str | None = None
    sla: dict[Urgency, SlaRule] = Field(default_factory=lambda: dict(DEFAULT_SLA), validate_default=True)
    nudges: Nudges = Field(default_factory=Nudges)
    webhooks: list[Webhook] = Field(default_factory=list)
    outcomes: list[str] = Field(default_factory=lambda: list(DEFAULT_OUTCOMES), min_length=1)
    intake_channels: list[IntakeChannel] = Field(default_factory=list)
    digest: Digest | None = None
    dedupe: Dedupe = Field(default_factory=Dedupe)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("kinds")
    @classmethod
    def _merge_builtin_kinds(cls, value: dict[str, Kind]) -> dict[str, Kind]:
        merged = dict(BUILTIN_KINDS)
        for name, kind in value.items():
            base = BUILTIN_KINDS.get(name)
            merged[name] = base.model_copy(update=kind.model_dump(exclude_unset=True)) if base else kind
        return merged

    @field_validator("sla")
    @classmethod
    def _fill_sla(cls, value: dict[Urgency, SlaRule]) -> dict[Urgency, SlaRule]:
        return {**DEFAULT_SLA, **value}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def kind(self, name: str) -> Kind | None:
        return self.kinds.get(name)

    def outcomes_for(self, kind_name: str) -> list[str]:
        kind = self.kinds.get(kind_name)
        return list(kind.outcomes) if kind and kind.outcomes else list(self.outcomes)

    def fallback(self) -> Route | None:
        if self.fallback_route:
            return next(route for route in self.routes if route.name == self.fallback_route)
        catch_all = [route for route in self.routes if route.when.is_catch_all and route.channel]
        return catch_all[-1] if catch_all else None

    def route_named(self, name: str | None) -> Route | None:
        return next((route for route in self.routes if route.name == name), None)


class ConfigError(Exception):
    """The configuration is not usable; `problems` lists each one with its path in the file."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _path_text(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part) or _is_union_tag(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names allowed at the parent of `loc`, walking the model tree by name."""
    model: Any = HandoffConfig
    at_mapping_key = False
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if at_mapping_key:  # a key the file chose, such as kinds.<name> or sla.<urgency>
            at_mapping_key = False
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        at_mapping_key = _is_mapping(field.annotation)
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _is_mapping(annotation: Any) -> bool:
    if get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in getattr(annotation, "__args__", ()))


def _is_union_tag(part: str) -> bool:
    """pydantic names each member of a union (`ChannelId | UserId`) in the error location; the file does not."""
    return part.startswith("constrained-")


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_PATTERN_MEANING = {
    CHANNEL_ID_PATTERN: "must be a Slack channel id such as C0123ABCD (not a #name)",
    USER_ID_PATTERN: "must be a Slack user id such as U0123ABCD (not an @name)",
    USERGROUP_ID_PATTERN: "must be a Slack user group id such as S0123ABCD",
}


def describe_errors(error: ValidationError) -> list[str]:
    problems: list[str] = []
    union_paths: dict[str, int] = {}
    for item in error.errors():
        loc = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            pattern = (item.get("ctx") or {}).get("pattern", "")
            message = _PATTERN_MEANING.get(pattern, message)
        if item["type"] == "extra_forbidden":
            guess = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            message = "unknown key" + (f" (did you mean {guess[0]!r}?)" if guess else "")
        if message.startswith("routes") or message.startswith("fallback_route"):
            problems.append(message)
        elif any(isinstance(part, str) and _is_union_tag(part) for part in loc):
            # one value that may be one of several things: one problem naming every alternative
            path = _path_text(loc)
            if path in union_paths:
                problems[union_paths[path]] += f", or {message.removeprefix('must be ')}"
            else:
                union_paths[path] = len(problems)
                problems.append(f"{path}: {message}")
        else:
            problems.append(f"{_path_text(loc)}: {message}")
    return problems


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list) else []


def reference_problems(data: dict[str, Any]) -> list[str]:
    """Problems between parts of the file (route names, kinds they name), read from the raw mapping
    so that they are reported together with every field error."""
    routes = [route for route in _as_list(data.get("routes")) if isinstance(route, dict)]
    names = [route.get("name") for route in routes]
    problems = []
    repeated = sorted({str(name) for name in names if name is not None and names.count(name) > 1})
    if repeated:
        problems.append(f"routes: names must be unique, repeated: {', '.join(repeated)}")
    fallback = data.get("fallback_route")
    if fallback is not None and fallback not in names:
        problems.append(f"fallback_route: no route is named {fallback!r}")
    declared = data.get("kinds")
    # str(): a kind named 2024 in YAML is a number (refused by the model, with its path, but sorted here first)
    known = sorted({str(name) for name in (*BUILTIN_KINDS, *(declared if isinstance(declared, dict) else ()))})
    for index, route in enumerate(routes):
        when = route.get("when")
        for kind in _as_list(when.get("kind") if isinstance(when, dict) else None):
            if kind not in known:
                problems.append(f"routes[{index}].when.kind: unknown kind {kind!r} (known: {', '.join(known)})")
    return problems


def routing_problems(config: HandoffConfig) -> list[str]:
    """SPEC §4: no handoff is ever left without an owner or a queue, so some route takes what no other does (and
    gives its channel to routes that have an owner or a queue but no channel of their own). A file without routes
    is left to HANDOFF_DEFAULT_CHANNEL (bot/settings.py)."""
    if not config.routes:
        return []
    fallback = config.fallback()
    if fallback is None:
        return ["routes: no route takes the handoffs the others do not match: end with a route without `when` "
                "that has a channel, or name one in fallback_route"]
    if fallback.channel is None:
        return [f"fallback_route: route {fallback.name!r} has no channel; the fallback route must have one "
                "(handoffs no other route takes are posted there)"]
    return []


def parse_config(data: Any, source: str = "handoffs.yml") -> HandoffConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping of settings"])
    problems = reference_problems(data)
    try:
        config = HandoffConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, describe_errors(error) + problems) from None
    problems = problems or routing_problems(config)  # (a fallback_route naming no route is already a problem)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path) -> HandoffConfig:
    import yaml  # config loading is the only YAML user; keep the import local to it

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(file), [f"cannot read the file: {error.strerror}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(file), [f"not UTF-8 text (byte {error.start + 1}): save the file as UTF-8"]) from None
    try:
        data, written_twice = _read_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(file), [f"{where}not valid YAML ({getattr(error, 'problem', error)})"]) from None
    except RecursionError:  # PyYAML reads nested lists and mappings by recursion, one call (or more) per level
        raise ConfigError(str(file), ["nested too deeply: lists or mappings hundreds of levels inside each other "
                                      "(not a configuration anyone writes)"]) from None
    try:
        config = parse_config(data, str(file))
    except ConfigError as error:
        raise ConfigError(str(file), written_twice + error.problems) from None
    if written_twice:
        raise ConfigError(str(file), written_twice)
    return config


def _read_yaml(text: str) -> tuple[Any, list[str]]:
    """The document (as `yaml.safe_load` reads it) and a problem for each key written twice in one mapping, which
    `safe_load` would silently resolve by keeping the last."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        # before construction: it merges `<<` keys into the nodes themselves, where they would look written twice
        written_twice = _keys_written_twice(node, loader)
        return loader.construct_document(node), written_twice
    finally:
        loader.dispose()


def _keys_written_twice(root: Any, loader: Any) -> list[str]:
    """A problem for every mapping key written twice, in the order of the file."""
    found: list[tuple[int, str]] = []
    visited: set[int] = set()  # an aliased node is checked once, however often it is used
    pending: list[tuple[Any, tuple[int | str, ...]]] = [(root, ())]
    while pending:  # a loop, not recursion: the composer has already accepted the nesting depth
        node, path = pending.pop()
        if id(node) not in visited:
            visited.add(id(node))
            found += _repeated_keys(node, path, loader)
            pending += _children(node, path)
    return [problem for _, problem in sorted(found)]


def _repeated_keys(node: Any, path: tuple[int | str, ...], loader: Any) -> list[tuple[int, str]]:
    """A mapping's own keys written twice, compared as YAML reads them (`yes` is `true`). Keys brought in by a
    merge key (`<<`) are not among them: a key written next to `<<` overrides the merged one, as YAML defines."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return []
    repeated: list[tuple[int, str]] = []
    first_marks: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key, mark = _key_as_read(key_node, loader), key_node.start_mark
        if key in first_marks:
            where = _two_places(first_marks[key], mark)
            repeated.append((mark.index, f"{_path_text((*path, _key_text(key_node)))}: key written twice ({where})"))
        else:
            first_marks[key] = mark
    return repeated


def _children(node: Any, path: tuple[int | str, ...]) -> list[tuple[Any, tuple[int | str, ...]]]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return [(child, (*path, index)) for index, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        return [(value_node, (*path, _key_text(key_node))) for key_node, value_node in node.value]
    return []


def _key_text(key_node: Any) -> str:
    import yaml

    return str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"


def _key_as_read(key_node: Any, loader: Any) -> Any:
    import yaml

    if not isinstance(key_node, yaml.ScalarNode):
        return id(key_node)  # a mapping or list as a key: refused later by construction (unhashable)
    if key_node.tag in loader.yaml_constructors:
        return loader.construct_object(key_node)
    return (key_node.tag, key_node.value)  # `<<` and `=`, which only flatten_mapping understands


def _two_places(first: Any, second: Any) -> str:
    """`line 1 and line 4`; with the columns when both are on one line (`{channel: C0A, channel: C0B}`)."""
    if first.line == second.line:
        return f"{_place(first)}, column {first.column + 1} and {_place(second)}, column {second.column + 1}"
    return f"{_place(first)} and {_place(second)}"


def _place(mark: Any) -> str:
    return f"line {mark.line + 1}"


def default_config(default_channel: str | None) -> HandoffConfig:
    """The configuration used when no file exists: one route posting to HANDOFF_DEFAULT_CHANNEL."""
    routes = [{"name": "default", "channel": default_channel}] if default_channel else []
    return parse_config({"routes": routes}, "HANDOFF_DEFAULT_CHANNEL")
