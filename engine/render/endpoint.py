"""A compiled endpoint: method, URL template, headers, query, auth, encoding."""
from __future__ import annotations

import base64
import copy
import functools
import re
from urllib.parse import unquote

from jinja2 import TemplateSyntaxError, nodes

from ..map.language import MappingError, Node, Scope, describe_type, template_ast
from ..map.templates import environment, is_template
from .reads import reads_of, template_reads
from .request import Request

AUTH_HEADER = "Authorization"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # what a request may use (the mapping schema lists the same)
BODY = "body"   # what a header or query value reads to sign the request: its body as sent (text)
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}
MERGED = "@merge"   # a request's headers may merge an object of headers (a webhook's from its settings)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")   # RFC 9110 token
FRAMING = frozenset({"content-length", "transfer-encoding", "host", "connection"})   # the HTTP client's own


class Endpoint:
    """``method`` is fixed (a string), or None when ``method_node`` (a template) gives it per event or route.

    ``signed``: the headers and query values that read ``body`` (("headers" or "query", name, node)),
    made after the body is encoded, from those very bytes (``sign``); the others are in ``nodes()``.
    """

    __slots__ = ("method", "method_node", "url", "headers", "query", "auth", "format", "signed", "named")

    def __init__(self, method: str | None, url: Node, headers: list, query: list, auth: tuple | None, format: str,
                 method_node: Node | None = None, signed: list | None = None):
        self.method, self.url, self.headers, self.query = method, url, headers, query
        self.auth, self.format, self.method_node = auth, format, method_node
        self.signed = signed or []
        # the header names the mapping writes (and Authorization, with auth): each wins over a merged header
        # of the same name in any case, so a request never carries one header twice
        self.named = frozenset(name.lower() for name in [*(n for n, _ in self.headers if n is not MERGED),
                                                         *(n for part, n, _ in self.signed if part == "headers"),
                                                         *((AUTH_HEADER,) if auth else ())])

    def build(self, scope: Scope, body, destination: str, action: str, message_ids: tuple, secrets) -> Request:
        request = self.finish(self.parts(scope), body, destination, action, message_ids, secrets)
        if self.signed:
            # a batch's scope holds its items (only a batch request's values may read them: the loader saw to it)
            items = scope.event.get("items") if isinstance(scope.event, dict) else None
            self.sign(request, scope.settings, scope.vars, items)
        return request

    def sign(self, request: Request, settings: dict, vars: dict, items=None) -> None:
        """Add the headers and query values that read ``body``: the body exactly as it goes on the wire.

        The encoded bytes are kept on the request (``Request.wire``), so what is sent is what was read.
        """
        wire = request.encoded_body()
        request.wire = wire
        scope = Scope({"body": wire.decode("utf-8") if wire is not None else "", "items": items}, settings, vars)
        for part, name, node in self.signed:
            value = node.evaluate(scope)
            if value is None or value == "":
                continue
            if part == "headers":
                request.headers[name] = str(value)
            else:
                request.query[name] = value

    def nodes(self) -> list:
        """Every node, in the order ``parts`` evaluates them (for the compiled path)."""
        return [self.url, *(node for _, node in self.headers), *(self.auth[1] if self.auth else ()),
                *(node for _, node in self.query), *((self.method_node,) if self.method_node else ())]

    def parts(self, scope: Scope) -> tuple[str, dict, dict, str]:
        """URL, headers (with auth), query and method for this event; MappingError for a bad URL, credential or method."""
        return self.assemble(node.evaluate(scope) for node in self.nodes())  # lazily: the first error wins

    def assemble(self, values) -> tuple[str, dict, dict, str]:
        """URL, headers, query and method from an iterator of the nodes' values, in ``nodes()`` order."""
        url = self.checked_url(next(values))
        return (url, *self.headers_and_query(values))

    def checked_url(self, url) -> str:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problem = f"the request URL rendered to {url!r}, not an http(s) URL"
        elif (segment := dot_segment(url)) is not None:
            problem = (f"the request URL's path has the segment {segment!r}: the HTTP client would send the "
                       "request to another path (an id of '.' or '..'?)")
        else:
            return url
        raise MappingError(self.url.where, problem)

    def checked_method(self, method) -> str:
        text = method.upper() if isinstance(method, str) else method
        if text not in METHODS:
            where = self.method_node.where if self.method_node is not None else ()
            raise MappingError(where, f"the request method rendered to {method!r}, not one of {', '.join(METHODS)}")
        return text

    def headers_and_query(self, values) -> tuple[dict, dict, str]:
        """Headers (with auth), query and method from the values of every node after the URL."""
        headers = {}
        for name, node in self.headers:
            value = next(values)
            if value is not None and value != "":
                if name is MERGED:   # first of the headers, so the named ones written after it win
                    headers = self.merged_headers(value, node)
                else:
                    headers[name] = str(value)
        if self.auth is not None:
            headers[AUTH_HEADER] = self._auth_header([next(values) for _ in self.auth[1]])
        query = {}
        for name, _node in self.query:
            value = next(values)
            if value is not None and value != "":
                query[name] = value
        method = self.checked_method(next(values)) if self.method_node is not None else self.method
        assert method is not None
        return headers, query, method

    def merged_headers(self, value, node: Node) -> dict:
        """The headers of a ``@merge`` object: names checked as HTTP tokens and values as text; a name the
        mapping writes itself is left to it, and ``content-type`` in any case replaces the default."""
        if not isinstance(value, dict):
            raise MappingError(node.where, f"headers' @merge rendered to {describe_type(value)}, not an object of "
                                           "header names and values")
        headers = {}
        for name, item in value.items():
            if item is None or item == "":
                continue
            if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
                raise MappingError(node.where, f"headers' @merge: {name!r} is not a header name (letters, digits "
                                               "and !#$%&'*+.^_`|~- only)")
            if name.lower() in FRAMING:
                raise MappingError(node.where, f"headers' @merge: {name!r} is set by the HTTP client from the "
                                               "request itself; leave it out")
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, (dict, list)):
                raise MappingError(node.where, f"headers' @merge: the value of {name!r} is {describe_type(item)}, "
                                               "not text")
            if name.lower() in self.named:
                continue
            # a value's characters are checked where every header's are, before sending (check_sendable)
            headers["Content-Type" if name.lower() == "content-type" else name] = str(item)
        return headers

    def finish(self, parts: tuple, body, destination: str, action: str, message_ids: tuple, secrets) -> Request:
        url, headers, query, method = parts
        return Request(destination, action, method, url, self.with_content_type(headers, method), dict(query),
                       None if method == "GET" else body, self.format, message_ids, secrets)

    def with_content_type(self, headers: dict, method: str) -> dict:
        """A copy of ``headers`` that also names the body's media type, unless it already does (or GET)."""
        headers = dict(headers)  # each request owns its dicts
        if method != "GET":
            headers.setdefault("Content-Type", CONTENT_TYPES[self.format])
        return headers

    def _auth_header(self, values: list) -> str:
        assert self.auth is not None  # called only for an endpoint that has auth
        kind, parts = self.auth
        if kind == "bearer":
            if not values[0]:
                raise MappingError(parts[0].where, "the bearer token rendered empty")
            return f"Bearer {values[0]}"
        username, password = (str(v) if v is not None else "" for v in values)
        if not username:
            raise MappingError(parts[0].where, "the basic-auth username rendered empty")
        return _basic(username, password)


def dot_segment(url: str) -> str | None:
    """The first '.' or '..' path segment of ``url``, raw or percent-encoded (``%2E%2E``), else None.

    requests and urllib3 remove dot segments, and turn ``%2E`` back into ``.``
    first, so no spelling of them reaches the vendor: ``.../people/events/..``
    would be sent as ``.../people/``. Most URLs have no '/.' and no '%2' in their path.
    """
    if "/." not in url and "%2" not in url:   # nearly every URL: two scans in C, nothing else
        return None
    start = url.find("/", url.find("//") + 2)
    if start < 0:
        return None
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    path = url[start:end]
    if "/." not in path and "%2" not in path:
        return None
    for segment in path.split("/"):
        if unquote(segment) in (".", ".."):
            return segment
    return None


@functools.lru_cache(maxsize=256)
def _basic(username: str, password: str) -> str:
    """The Basic credential; kept, since most routes send the same one with every event."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def compile_endpoint(spec: dict, compiler, path: tuple, operator_vars: frozenset = frozenset()) -> Endpoint:
    """``spec`` is the merged request object (defaults, then the action's own).

    ``operator_vars``: the vars in scope whose values come from settings alone (engine/render/reads.py);
    a URL keeps them as written, as it keeps settings, and escapes every other value (``compile_url``).
    """
    url_source = spec.get("url")
    if not url_source:
        compiler.report(path, "'url' is required (in the action's request or in defaults.request)")
        url_source = ""
    url = compile_url(url_source, compiler, path + ("url",), operator_vars)
    signing = copy.copy(compiler)   # headers and query may also read `body`; problems go to the same list
    signing.scopes = compiler.scopes | {BODY}
    parts: dict[str, list] = {"headers": [], "query": []}
    signed = []
    for part, entries in parts.items():
        for name, raw in (spec.get(part) or {}).items():
            if part == "headers" and name == MERGED:   # an object of headers, under the named ones (first)
                entries.insert(0, (MERGED, compiler.merge_source(raw, path + (part, name), False)))
                continue
            node = signing.value(raw, path + (part, name))
            reads = reads_of(node)
            if BODY not in reads.scopes:
                entries.append((name, node))
                continue
            others = reads.scopes - {BODY, "settings", "vars", "items"}
            if others:
                compiler.report(path + (part, name), f"a value that reads body reads body, settings and vars "
                                                     f"(and items in a batch), not {', '.join(sorted(others))}: "
                                                     "compute what it needs in a var")
            signed.append((part, name, node))
    headers, query = parts["headers"], parts["query"]
    auth = None
    if "auth" in spec:
        if "bearer" in spec["auth"]:
            auth = ("bearer", [compiler.value(spec["auth"]["bearer"], path + ("auth", "bearer"))])
        else:
            basic = spec["auth"]["basic"]
            auth = ("basic", [compiler.value(basic.get("username", ""), path + ("auth", "basic", "username")),
                              compiler.value(basic.get("password", ""), path + ("auth", "basic", "password"))])
    method, method_node = spec.get("method", "POST"), None
    if isinstance(method, str) and is_template(method):  # from a setting or the event; checked when rendered
        method, method_node = None, compiler.value(method, path + ("method",))
    return Endpoint(method, url, headers, query, auth, spec.get("format", "json"), method_node, signed)


# --------------------------------------------------------------------------- URLs

ESCAPE = "url_segment"          # the filter that makes a value one path segment (or one query value)
OPERATOR, DATA = "\x00", "\x01"  # stand-ins for a value in the URL's skeleton: the operator's, or data
PATH_STARTED = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*/")


def compile_url(source, compiler, path: tuple, operator_vars: frozenset) -> Node:
    """The URL template, compiled so that no event or answer value can change the URL's shape.

    Settings, and vars made from settings alone, are the operator's: kept as written (a
    base URL carries slashes). Every other ``{{ value }}`` is data: in the path it is one
    segment, in the query one value, percent-encoded with ``url_segment`` unless the
    expression already ends with it (never twice). Data may not choose the scheme or the
    host: a template that puts it there is refused. An id ``x?admin=1#`` then stays one
    segment, and ``..`` is still refused when rendered (``Endpoint.checked_url``).
    (The schema makes a URL a string: no directive builds one.)
    """
    if not isinstance(source, str) or not is_template(source):
        return compiler.value(source, path)
    rewritten, refused = url_template(source, operator_vars)
    if refused is not None:
        compiler.report(path, f"{{{{{refused}}}}} puts event or answer data in the URL's scheme or host: "
                              "where a request goes comes from settings or the URL's text, never from the data "
                              f"it carries (URL template {source!r})")
        return compiler.value("", path)
    return compiler.value(rewritten, path)


@functools.lru_cache(maxsize=4096)
def url_template(source: str, operator_vars: frozenset) -> tuple[str, str | None]:
    """(the template with each data value escaped, None), or (source, the expression of a value that would
    land in the scheme or host). Kept per text: mapping files repeat their URL templates."""
    try:
        tokens = list(environment().lex(source))
    except TemplateSyntaxError:
        return source, None   # the compiler words the syntax error
    out: list[str] = []
    skeleton = ""      # the URL's literal text, with a stand-in for each value: where does the next one land?
    position = 0
    while position < len(tokens):
        _, kind, text = tokens[position]
        if kind != "variable_begin":
            out.append(text)
            if kind == "data":
                skeleton += text
            position += 1
            continue
        end = next((i for i in range(position, len(tokens)) if tokens[i][1] == "variable_end"), None)
        if end is None:   # "{{" never closed: the lexer stops there, the compiler words the syntax error
            return source, None
        expression = "".join(token[2] for token in tokens[position + 1:end])
        operator, escaped = _url_value(expression, operator_vars)
        if not operator and _url_part(skeleton) == "authority":
            return source, expression
        if operator or escaped:
            out.append("".join(token[2] for token in tokens[position:end + 1]))
        else:
            out.append(f"{text} ({expression.strip()}) | {ESCAPE} {tokens[end][2]}")
        skeleton += OPERATOR if operator else DATA
        position = end + 1
    return "".join(out), None


def _url_value(expression: str, operator_vars: frozenset) -> tuple[bool, bool]:
    """(the operator's value, already ends with ``url_segment``) for one ``{{ expression }}`` of a URL."""
    try:
        operator = template_reads("{{" + expression + "}}").operator_only(operator_vars)
        output = template_ast("{{" + expression + "}}").body[0]
    except TemplateSyntaxError:
        return False, False
    last = output.nodes[0] if isinstance(output, nodes.Output) and len(output.nodes) == 1 else None
    return operator, isinstance(last, nodes.Filter) and last.name == ESCAPE


def _url_part(skeleton: str) -> str:
    """Where a value after ``skeleton`` lands: "query" (after a ?), "path", or "authority" (scheme and host).

    The path starts after the first / past "://", or right after an operator value that opens the
    URL (a base URL such as ``{{ settings.base_url }}``) when the text names no scheme.
    """
    if "?" in skeleton or "#" in skeleton:
        return "query"
    if PATH_STARTED.match(skeleton) or (skeleton.startswith(OPERATOR) and "://" not in skeleton):
        return "path"
    return "authority"


def merge_request(defaults: dict | None, own: dict | None) -> dict:
    """Action fields win; headers and query are merged key by key."""
    merged = dict(defaults or {})
    for key, value in (own or {}).items():
        if key in ("headers", "query") and isinstance(value, dict):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged
