"""The ``storage`` and ``delivery`` sections of a configuration file, parsed once into typed options."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..durations import parse_duration
from ..problems import Problem


@dataclass(frozen=True)
class DeliveryOptions:
    retry_for: float = 4 * 3600.0      # Segment retries for four hours
    backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 10.0
    lease: float = 60.0
    dedupe_window: float = 86400.0
    keep_done_for: float = 7 * 86400.0
    archive_for: float = 7 * 86400.0   # accepted events stay this long for replays (and while they have deliveries)
    poll: float = 1.0                  # an idle worker looks at the store this often; wake-ups are what hurry it
    batch_wait: float = 0.2            # after a batch short of full, a batching destination gathers this long


@dataclass(frozen=True)
class StorageOptions:
    url: str = field(default="sqlite:///eventmap.db", repr=False)  # a PostgreSQL URL may hold a password
    options: tuple = ()                # extra keyword options for the backend, as (name, value) pairs


def delivery_options(config: dict, problem) -> tuple[DeliveryOptions, list[Problem]]:
    """``problem(path, message)`` makes a Problem pointing at the file and line."""
    spec = config.get("delivery") or {}
    values, problems = {}, []
    for name in DeliveryOptions.__dataclass_fields__:
        if name in spec:
            try:
                values[name] = parse_duration(spec[name])
            except ValueError as exc:
                problems.append(problem(("delivery", name), str(exc)))
    options = DeliveryOptions(**values)
    if options.poll <= 0:
        problems.append(problem(("delivery", "poll"), "the poll interval must be longer than 0: idle workers would "
                                "query the store without pause (wake-ups make them start at once anyway)"))
    if options.dedupe_window > options.keep_done_for:
        problems.append(problem(("delivery", "dedupe_window"), "the dedupe window cannot be longer than keep_done_for: "
                                "pruned deliveries can no longer tell a duplicate"))
    return options, problems


def storage_options(config: dict) -> StorageOptions:
    spec = config.get("storage")
    if spec is None:
        return StorageOptions()
    if isinstance(spec, str):
        return StorageOptions(spec)
    extra = tuple((k, v) for k, v in spec.items() if k != "url")
    return StorageOptions(spec["url"], extra)
