"""docs/destinations/NAME.md, one page per destination, made from its YAML file.

Why: a destination's settings, the calls it takes, what each request field is made from, its batching
and limits and the pages its choices come from are all in its YAML file; a page written by hand would
drift from it. Each page is generated from the loaded destination (the compiled actions, described
the way ``eventmap explain`` describes a field) and the file's text (the URLs its comments cite).
tests/test_destination_docs.py fails when a page is stale. Regenerate with::

    python -m engine.destination_docs --write-docs
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .destination import Destination
from .engine import load_mappings
from .load.yaml_source import load_yaml
from .map.language import Node, Object
from .problems import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"
DOCS = ROOT / "docs" / "destinations"
COMMAND = "python -m engine.destination_docs --write-docs"
URL = re.compile(r"https?://[^\s`'\"<>)\]]+")


def comment_of(line: str) -> str:
    """The comment of one YAML line: from a ``#`` at the start or after a space, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[i + 1:]
    return ""


def cited(text: str) -> list[str]:
    """Every URL the file's comments cite, in order of first mention."""
    found: dict[str, None] = {}
    for line in text.splitlines():
        for url in URL.findall(comment_of(line)):
            if "..." not in url and "{" not in url:  # an example or a URL template, not a source
                found.setdefault(url.rstrip(".,;:"), None)
    return list(found)


def _cell(text: object) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: object) -> str:
    return f"`{_cell(text)}`" if text not in (None, "") else ""


def _settings(destination: Destination) -> list[str]:
    spec = destination.settings
    lines = ["## Settings", "",
             f"Each may also come from the environment: `{spec.env_name('')}<SETTING>`. Secret settings are masked in every "
             "request shown, log line and dead letter.", "",
             "| setting | type | required | secret | default | description |", "| --- | --- | --- | --- | --- | --- |"]
    for name, prop in spec.properties.items():
        kind = prop.get("type", "")
        if "enum" in prop:
            kind = " \\| ".join(f"`{v}`" for v in prop["enum"])
        default = _code(prop["default"] if isinstance(prop["default"], str) else json.dumps(prop["default"])) if "default" in prop else ""
        text = prop.get("description") or prop.get("title", "")
        lines.append(f"| `{name}` | {kind} | {'yes' if name in spec.required else ''} | "
                     f"{'yes' if prop.get('secret') else ''} | {default} | {_cell(text)} |")
    depends = spec.schema.get("dependentRequired")
    if depends:
        lines += [""] + [f"With `{name}`, also: {', '.join(f'`{n}`' for n in needs)}." for name, needs in depends.items()]
    return lines


def _calls(destination: Destination) -> list[str]:
    lines = ["## Calls", "", "| call | action | takes |", "| --- | --- | --- |"]
    for call_type, (named, own) in destination.by_type.items():
        for action in named:
            lines.append(f"| {call_type} | [{action.name}](#{action.name}) | {_cell(action.subscription.describe())} |")
        if own is not None:
            takes = "every other " + call_type if named else "every " + call_type
            lines.append(f"| {call_type} | [{own.name}](#{own.name}) | {takes} |")
    taken = ", ".join(destination.by_type)
    others = [t for t in ("identify", "track", "page", "screen", "group", "alias") if t not in destination.by_type]
    lines += ["", f"Other calls ({', '.join(others)}) are skipped with a reason." if others else
              f"Every call type is taken ({taken})."]
    return lines


def _endpoint(endpoint) -> list[str]:
    method = endpoint.method or _cell(endpoint.method_node.describe())
    lines = [f"- request: `{method}` {_code(endpoint.url.describe().removeprefix('template '))}"]
    for name, node in endpoint.headers:
        lines.append(f"  - header `{name}`: {_code(node.describe())}")
    for name, node in endpoint.query:
        lines.append(f"  - query `{name}`: {_code(node.describe())}")
    for part, name, node in endpoint.signed:
        lines.append(f"  - {'header' if part == 'headers' else 'query'} `{name}`, from the body as sent: "
                     f"{_code(node.describe())}")
    if endpoint.auth is not None:
        lines.append(f"  - auth: {endpoint.auth[0]} ({', '.join(_code(n.describe()) for n in endpoint.auth[1])})")
    if endpoint.format != "json":
        lines.append(f"  - body encoded as {endpoint.format}")
    return lines


def _fields(pairs) -> list[str]:
    lines = ["| field | from |", "| --- | --- |"]
    for path, node in pairs:
        lines.append(f"| `{_cell(path)}` | {_code(node.describe())} |")
    return lines


def _action(destination: Destination, action, description: str) -> list[str]:
    lines = [f"### {action.name}", ""]
    if description:
        lines += [description, ""]
    if action.subscription is not None:
        lines += [f"Takes {action.call_type} calls: {_cell(action.subscription.describe())}.", ""]
    variables = [(f"vars.{name}", node) for name, node in action.vars]
    if action.steps is None:
        lines += _endpoint(action.endpoint)
        batched = destination.batching is not None and action.batched
        when = "" if destination.limits.batch else " when a route turns batching on"
        lines += ["- " + (f"batched with other events{when} (see [Batching and limits](#batching-and-limits))" if batched
                          else "one request per event"), ""]
        lines += _fields(variables + [(".".join(map(str, p)) or "(body)", n) for p, n in mapped_leaves(action.body)])
    else:
        lines += ["Named steps, run in order for each event, each its own request, never batched "
                  "([docs/language.md, Steps](../language.md#steps)):", ""]
        if variables:
            lines += _fields(variables) + [""]
        for name, step in action.steps.items():
            runs = ("only when another step's rule asks for it" if step.fallback else
                    f"when `{_cell(step.when_text)}`" if step.when_text else "always")
            lines += [f"#### step {name}", "", f"Runs {runs}."]
            lines += _endpoint(step.endpoint)
            for status, rule in step.on_status.items():
                lines.append(f"  - answer {status}: {_cell(rule.describe())}")
            lines += [""] + _fields([(f"vars.{n}", node) for n, node in step.vars] +
                                    [(".".join(map(str, p)) or "(body)", node) for p, node in mapped_leaves(step.body)]
                                    if step.body is not None else []) + [""]
            if step.required:
                lines += ["Required of this step:", ""]
                lines += [f"- `{_cell(rule.path)}`: {_cell(rule.written or 'must not be empty')}" for rule in step.required]
    rules = [f"- `{_cell(rule.path)}`: {_cell(rule.written or 'must not be empty')}" for rule in action.required]
    if rules:
        lines += ["", "Required (the event is rejected with this reason otherwise):", ""] + rules
    return lines + [""]


def mapped_leaves(node: Node, prefix: tuple = ()):
    """(output path, node) for every field a mapping writes, with ``@merge`` sources under the object they fill:
    the mapping as written (a page describes every event), where ``explain`` shows one event's fields."""
    if isinstance(node, Object):
        for merge in node.merges:
            yield prefix + (node.merge_key,), merge
        for key, child in node.fields:
            yield from mapped_leaves(child, prefix + (key,))
    else:
        yield prefix, node


def _batching(destination: Destination) -> list[str]:
    lines = ["## Batching and limits", ""]
    if destination.envelope is not None:
        lines.append(f"- every request's body is the envelope {_code(destination.envelope.body.describe())} around the mapped items")
    batching = destination.batching
    if batching is None:
        lines.append("- no batching: one request per event")
    else:
        size = f" and {batching.max_bytes:,} bytes" if batching.max_bytes else ""
        if not destination.limits.batch:
            lines.append("- batching is off unless a routes file turns it on (`limits: {batch: true}`): each event "
                         "is its own request by default")
        lines.append(f"- batches of at most {batching.max_events:,} events{size}, as one request:")
        lines += ["  " + line for line in _endpoint(batching.endpoint)]
        if batching.envelope is not None:
            lines.append(f"  - body: {_code(batching.envelope.body.describe())}")
    limits = destination.limits
    rate = f", at most {limits.rate:g} a second" if limits.rate else ""
    plural = "s" if limits.concurrency != 1 else ""
    lines.append(f"- at most {limits.concurrency} request{plural} in flight{rate} (a routes file may lower it)")
    return lines


def page(destination: Destination, data: dict, text: str, file: str) -> str:
    """The Markdown page of one destination: ``data`` is its YAML file read, ``text`` the file itself,
    ``file`` its path in the repository."""
    lines = [f"# {destination.name}", ""]
    if destination.description:
        lines += [destination.description, ""]
    lines += [f"Generated from [`{file}`](../../{file}) by `{COMMAND}`: edit the YAML file, not this page. "
              f"In an event's `integrations` object this destination is `{destination.name}`.", ""]
    lines += _settings(destination) + [""] + _calls(destination) + ["", "## Actions", ""]
    for name, action in destination.actions.items():
        lines += _action(destination, action, data["actions"][name].get("description", ""))
    lines += _batching(destination) + ["", "## Sources", ""]
    docs = data.get("docs") or []
    urls = [u for u in cited(text) if u not in docs]
    lines += [f"- {u}" for u in docs]
    lines += ["", "Cited in the file's comments:", ""] + [f"- {u}" for u in urls] if urls else []
    return "\n".join(lines).rstrip() + "\n"


def pages(mappings: Path = MAPPINGS) -> dict[Path, str]:
    """docs/destinations/<slug>.md -> its text, for every destination file under ``mappings``."""
    destinations, _, problems = load_mappings(mappings)
    if problems:
        raise ConfigError(problems)
    out = {}
    for slug, destination in sorted(destinations.items()):
        path = Path(mappings) / "destinations" / f"{slug}.yaml"
        file = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) else path.name
        doc, _ = load_yaml(path)
        assert doc is not None  # it loaded above
        out[DOCS / f"{slug}.md"] = page(destination, doc.data, path.read_text(encoding="utf-8"), file)
    return out


def stale(wanted: dict[Path, str]) -> list[Path]:
    """Pages that differ from what the YAML gives, are missing, or belong to no destination."""
    found = [path for path, text in wanted.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    extra = sorted(set(DOCS.glob("*.md")) - set(wanted)) if DOCS.is_dir() else []
    return found + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.destination_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="rewrite the stale pages under docs/destinations/")
    args = parser.parse_args(argv)
    wanted = pages()
    old = stale(wanted)
    if not old:
        return 0
    if not args.write_docs:
        for path in old:
            print(f"{path} disagrees with its YAML file; run {COMMAND}", file=sys.stderr)
        return 1
    DOCS.mkdir(parents=True, exist_ok=True)
    for path in old:
        if path in wanted:
            path.write_text(wanted[path], encoding="utf-8")
        else:
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
