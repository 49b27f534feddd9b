"""Check rendered requests against what each vendor publishes: its OpenAPI file, its JSON Schema, or
the rules its documentation states (written down as a JSON Schema with the page of each rule).

A contract is a list of checks; each check turns one rendered request into violations, each with
where (``query.project_id``, ``body[0].properties.time``), the rule broken (a JSON Schema keyword, or
``required``, ``security``, ``path`` ...) and a message. Where a vendor's own contract is wrong, a
named Exception excuses one rule at one place, with its reason and the page that says so; nothing
else is ever excused. tests/test_contracts.py runs every destination's contract on every fixture.

The checks see the request as it leaves eventmap: method, URL, headers, query and the encoded body
bytes (parsed back from JSON or the form), not the mapping's own objects.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from engine.render.request import Request

CONTRACTS = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"


@dataclass(frozen=True)
class Violation:
    check: str      # which check found it: "mixpanel openapi", "ga4 event builder", "slack rules"
    where: str      # query.project_id, headers.authorization, body[0].properties.time
    rule: str       # the JSON Schema keyword or the request rule broken
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Exception_:
    """A vendor contract that is wrong in one place: one rule at one location, with why and the source.

    ``message`` narrows further to violations whose message contains it (a dependency between two
    named fields, say). A ``where`` ending in ``.*`` is any one key of that object (``body.metadata.*``:
    each metadata value, not what is nested in one), for a contract wrong about every value of a map.
    Named ``Exception_`` so as not to shadow the builtin.
    """

    name: str
    check: str
    where: str
    rule: str
    reason: str
    url: str
    message: str = ""

    def excuses(self, violation: Violation) -> bool:
        return (violation.check == self.check and self._at(violation.where) and violation.rule == self.rule
                and self.message in violation.message)

    def _at(self, where: str) -> bool:
        if not self.where.endswith(".*"):
            return where == self.where
        parent = self.where[:-1]   # "body.metadata."
        key = where[len(parent):]
        return where.startswith(parent) and key != "" and not set(key) & set(".[")


# --------------------------------------------------------------------------- the request as sent

@dataclass(frozen=True)
class Sent:
    """One rendered request as the vendor receives it."""

    method: str
    url: str
    scheme: str
    host: str
    path: str
    query: dict
    headers: dict        # names lowercased
    content_type: str
    raw: bytes
    body: object         # parsed from ``raw`` (JSON, or a form as a dict)

    @classmethod
    def of(cls, request: Request) -> Sent:
        full = urlsplit(request.full_url())
        headers = {name.lower(): value for name, value in request.headers.items()}
        raw = request.encoded_body() or b""
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if not raw:
            body = None
        elif content_type == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        else:
            body = json.loads(raw)
        return cls(request.method, request.full_url(), full.scheme, full.netloc, full.path,
                   dict(parse_qsl(full.query, keep_blank_values=True)), headers, content_type, raw, body)

    def view(self) -> dict:
        """What a rules schema validates: every part of the request as plain JSON."""
        return {"method": self.method, "scheme": self.scheme, "host": self.host, "path": self.path,
                "query": self.query, "headers": self.headers, "content_type": self.content_type,
                "body_bytes": len(self.raw), "body": self.body}


def _where(prefix: str, path) -> str:
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def schema_violations(check: str, validator, instance, prefix: str) -> list[Violation]:
    """Every JSON Schema error as a violation; a missing property is placed at that property."""
    found = []
    for error in validator.iter_errors(instance):
        for leaf in _leaves(error):
            where = _where(prefix, leaf.absolute_path)
            if leaf.validator == "required":
                missing = re.match(r"'(.*)' is a required property", leaf.message)
                if missing:
                    where += f".{missing.group(1)}"
            found.append(Violation(check, where, str(leaf.validator), leaf.message))
    return found


def _leaves(error):
    """The errors that say what is wrong, not only that one of several alternatives failed."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return [best] if best is not None else [error]
    return [error]


# --------------------------------------------------------------------------- the checks

class Check:
    """One contract check: a name, and the violations of one request."""

    name: str

    def violations(self, sent: Sent) -> list[Violation]:
        raise NotImplementedError


class RequestRules(Check):
    """Our own JSON Schema over the whole request (``Sent.view``), written from a vendor's documented rules:
    each rule carries its source page in a ``description`` or ``$comment``."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path

    @cached_property
    def validator(self):
        schema = json.loads(self.path.read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    def violations(self, sent: Sent) -> list[Violation]:
        return schema_violations(self.name, self.validator, sent.view(), "request")


class BodySchema(Check):
    """A vendor's JSON Schema of the request body (GA4's Event Builder schema)."""

    def __init__(self, name: str, path: Path, formats: dict[str, Callable[[object], bool]] | None = None):
        self.name, self.path, self.formats = name, path, formats or {}

    @cached_property
    def validator(self):
        schema = json.loads(self.path.read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        checker = jsonschema.FormatChecker(formats=())
        for name, test in self.formats.items():
            checker.checks(name)(test)
        return cls(schema, format_checker=checker)

    def violations(self, sent: Sent) -> list[Violation]:
        return schema_violations(self.name, self.validator, sent.body, "body")


class OpenAPIOperation(Check):
    """An OpenAPI 3.0 operation chosen by operationId, checked part by part with openapi-schema-validator.

    For contracts whose paths no router can match (Mixpanel's ``/engage#profile-set``: several
    operations share one real path): ``choose`` names the operation for a request; its path (without
    the fragment), method, server, parameters, security, content type and body are checked here.
    Unlike openapi-core, a required parameter is never filled in from its default.
    """

    def __init__(self, name: str, path: Path, choose: Callable[[Sent], str | None]):
        self.name, self.path, self.choose = name, path, choose

    @cached_property
    def spec(self) -> dict:
        return yaml.safe_load(self.path.read_text(encoding="utf-8"))

    @cached_property
    def operations(self) -> dict[str, tuple[str, str, dict, list, str]]:
        """operationId -> (real path, method, operation, path-level parameters, JSON pointer of the operation)."""
        found = {}
        for key, item in self.spec["paths"].items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    pointer = "/paths/" + key.replace("~", "~0").replace("/", "~1") + "/" + method
                    found[operation["operationId"]] = (key.split("#")[0], method.upper(), operation,
                                                       item.get("parameters", []), pointer)
        return found

    @cached_property
    def registry(self):
        return Registry().with_resource("urn:contract", Resource.from_contents(self.spec, default_specification=DRAFT4))

    def validator(self, schema: dict):
        from openapi_schema_validator import OAS30Validator  # the test extra's pin (pyproject.toml)
        return OAS30Validator(schema, registry=self.registry)

    def servers(self) -> list[str]:
        urls = []
        for server in self.spec.get("servers", []):
            variables = server.get("variables", {})
            options = [{}]
            for var, spec in variables.items():
                options = [{**o, var: value} for o in options for value in spec.get("enum", [spec["default"]])]
            for option in options:
                url = server["url"]
                for var, value in option.items():
                    url = url.replace("{" + var + "}", value)
                urls.append(url.rstrip("/"))
        return urls

    def violations(self, sent: Sent) -> list[Violation]:
        operation_id = self.choose(sent)
        if operation_id is None or operation_id not in self.operations:
            return [Violation(self.name, "path", "operation", f"no operation of the contract takes {sent.method} {sent.path}"
                                                                f" (chose {operation_id!r})")]
        path, method, operation, shared, pointer = self.operations[operation_id]
        found = []
        if sent.path != path:
            found.append(Violation(self.name, "path", "path", f"{operation_id} is {path}, not {sent.path}"))
        if sent.method != method:
            found.append(Violation(self.name, "method", "method", f"{operation_id} is {method}, not {sent.method}"))
        origin = f"{sent.scheme}://{sent.host}"
        if origin not in self.servers():
            found.append(Violation(self.name, "host", "servers", f"{origin} is none of {self.servers()}"))
        found += self._parameters(sent, [*shared, *operation.get("parameters", [])])
        found += self._security(sent, operation)
        found += self._body(sent, operation, operation_id, pointer)
        return found

    def _parameters(self, sent: Sent, parameters: list) -> list[Violation]:
        found = []
        for parameter in parameters:
            place = parameter["in"]
            if place not in ("query", "header"):
                continue
            name = parameter["name"]
            values = sent.query if place == "query" else sent.headers
            key = name if place == "query" else name.lower()
            where = f"{place if place == 'query' else 'headers'}.{key}"
            if key not in values:
                if parameter.get("required"):
                    found.append(Violation(self.name, where, "required", f"required {place} parameter '{name}' is missing"))
                continue
            schema = parameter.get("schema", {})
            value = _deserialised(values[key], schema)
            found += [Violation(self.name, where, v.rule, v.message)
                      for v in schema_violations(self.name, self.validator(schema), value, where)]
        return found

    def _security(self, sent: Sent, operation: dict) -> list[Violation]:
        requirements = operation.get("security", self.spec.get("security"))
        if not requirements:
            return []
        schemes = self.spec.get("components", {}).get("securitySchemes", {})
        for requirement in requirements:
            if all(_satisfies(sent, schemes[name]) for name in requirement):
                return []
        named = " or ".join("+".join(r) or "none" for r in requirements)
        return [Violation(self.name, "headers.authorization", "security", f"the request meets none of: {named}")]

    def _body(self, sent: Sent, operation: dict, operation_id: str, pointer: str) -> list[Violation]:
        body = operation.get("requestBody")
        if body is None:
            return []
        if sent.body is None:
            return [Violation(self.name, "body", "required", f"{operation_id} needs a body")] if body.get("required") else []
        content = body.get("content", {})
        if sent.content_type not in content:
            return [Violation(self.name, "headers.content-type", "content", f"{sent.content_type!r} is none of {sorted(content)}")]
        schema = f"urn:contract#{pointer}/requestBody/content/{sent.content_type.replace('/', '~1')}/schema"
        return schema_violations(self.name, self.validator({"$ref": schema}), sent.body, "body")


def _deserialised(text: str, schema: dict):
    """A query or header value as its schema's type (the `simple`/`form` styles of scalars)."""
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?\d+", text):
        return int(text)
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def _satisfies(sent: Sent, scheme: dict) -> bool:
    auth = sent.headers.get("authorization", "")
    if scheme.get("type") == "http":
        return auth.lower().startswith(scheme["scheme"].lower() + " ") and len(auth.split(" ", 1)[1]) > 0
    if scheme.get("type") == "apiKey":
        values = sent.query if scheme["in"] == "query" else sent.headers
        return (scheme["name"] if scheme["in"] == "query" else scheme["name"].lower()) in values
    return False


class OpenAPIRouted(Check):
    """A whole OpenAPI document through openapi-core: it finds the operation from method, server and path
    template, then checks parameters, security, content type and body (PostHog, Intercom)."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path

    @cached_property
    def api(self):
        from openapi_core import OpenAPI  # the test extra's pin (pyproject.toml)
        return OpenAPI.from_file_path(str(self.path))

    def violations(self, sent: Sent) -> list[Violation]:
        from openapi_core.validation.request.exceptions import RequestValidationError
        try:
            self.api.validate_request(_OpenAPICoreRequest(sent))
        except RequestValidationError as exc:
            return _openapi_core_violations(self.name, exc)
        except Exception as exc:  # PathNotFound, OperationNotFound, ServerNotFound: the route itself
            return [Violation(self.name, "path", type(exc).__name__, str(exc))]
        return []


class _OpenAPICoreRequest:
    """openapi_core.protocols.Request for a rendered request."""

    def __init__(self, sent: Sent):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict
        self.method = sent.method.lower()
        self.host_url = f"{sent.scheme}://{sent.host}"
        self.path = sent.path
        self.full_url_pattern = self.host_url + sent.path
        self.parameters = RequestParameters(query=ImmutableMultiDict(list(sent.query.items())),
                                            header=Headers(list(sent.headers.items())), cookie=ImmutableMultiDict())
        self.body = sent.raw
        self.content_type = sent.content_type


def _openapi_core_violations(check: str, exc) -> list[Violation]:
    cause = exc.__cause__ or exc
    errors = getattr(cause, "schema_errors", None)
    if errors:
        found = []
        for error in errors:
            where = _where("body", error.absolute_path)
            if error.validator == "required":
                missing = re.match(r"'(.*)' is a required property", error.message)
                where += f".{missing.group(1)}" if missing else ""
            found.append(Violation(check, where, str(error.validator), error.message))
        return found
    name = getattr(cause, "name", None)
    where = f"query.{name}" if name else "request"
    return [Violation(check, where, type(cause).__name__, str(cause))]


# --------------------------------------------------------------------------- a destination's contract

@dataclass
class Contract:
    """What a destination's requests must satisfy, the exceptions its vendor's contract needs, and the
    settings to render with besides the fixture's (so a settings-dependent request is checked too)."""

    checks: list[Check]
    exceptions: list[Exception_] = field(default_factory=list)
    variants: list[dict] = field(default_factory=list)

    def violations(self, request: Request) -> tuple[list[Violation], list[tuple[Violation, Exception_]]]:
        """(violations left, violations excused with the exception that excused each)."""
        sent = Sent.of(request)
        left, excused = [], []
        for check in self.checks:
            for violation in check.violations(sent):
                exception = next((e for e in self.exceptions if e.excuses(violation)), None)
                if exception is None:
                    left.append(violation)
                else:
                    excused.append((violation, exception))
        return left, excused

