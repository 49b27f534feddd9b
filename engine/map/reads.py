"""What a JMESPath read reads, from its parsed tree: the scopes it starts from, whether it is a plain path,
its fallbacks. Used by the compiler (language.py) and the code it generates (codegen.py) alike."""
from __future__ import annotations


def root_reads(parsed: dict) -> list[str]:
    """The names an expression reads from its root (the scopes): ``event`` for ``event.a[?b].c``, ``@`` for ``@``."""
    kind = parsed["type"]
    if kind == "field":
        return [parsed["value"]]
    if kind == "current":
        return ["@"]
    if kind in ("subexpression", "index_expression", "projection", "value_projection", "filter_projection",
                "pipe", "flatten"):
        return root_reads(parsed["children"][0])  # the rest reads what the left side gave
    if kind in ("expref", "literal", "index", "slice"):
        return []
    return [name for child in parsed.get("children", ()) for name in root_reads(child)]


def plain_steps(parsed: dict) -> list | None:
    """['a', 'b'] for ``a.b``, None for anything that needs JMESPath itself."""
    kind = parsed["type"]
    if kind == "field":
        return [parsed["value"]]
    if kind == "subexpression":
        steps: list = []
        for child in parsed["children"]:
            inner = plain_steps(child)
            if inner is None:
                return None
            steps += inner
        return steps
    return None


def split_or(parsed: dict) -> list[dict]:
    """The alternatives of a top-level ``a || b || c`` (one element when there is no ``||``)."""
    if parsed["type"] == "or_expression":
        return [part for child in parsed["children"] for part in split_or(child)]
    return [parsed]


def nested_or(parsed) -> bool:
    """True when an ``||`` appears anywhere in this expression tree."""
    if isinstance(parsed, dict):
        return parsed.get("type") == "or_expression" or any(nested_or(c) for c in parsed.get("children", ()))
    return False


PATH_STEPS = frozenset({"subexpression", "index_expression", "projection", "value_projection", "filter_projection",
                        "flatten"})


def negated_root(parsed: dict) -> bool:
    """True when a ``!`` applies to a bare name that a path then continues from: ``!event.userId`` is
    ``(!event).userId`` to JMESPath, the negation of the scope (always false) read further (always null)."""
    children = parsed.get("children", ())
    if parsed.get("type") in PATH_STEPS and children and children[0].get("type") == "not_expression" \
            and children[0]["children"][0]["type"] in ("field", "current"):
        return True
    return any(negated_root(child) for child in children if isinstance(child, dict))


def negation_problem(text: str, parsed: dict) -> str | None:
    """Why ``text`` does not mean what it says, with the spelling that does (None when it is fine).

    The one wording of this trap, for every condition and read: @if, @path, when, a route's where.
    """
    if not negated_root(parsed):
        return None
    return (f"'!' negates only the name right after it, so JMESPath reads {text!r} as the negation of that name "
            f"(false) and then a field of false (null): write {parenthesized_negations(text)!r}")


def parenthesized_negations(text: str) -> str:
    """``text`` with each ``!name.path`` written ``!(name.path)``: the negation of the whole path."""
    from jmespath.lexer import Lexer

    tokens = [t for t in Lexer().tokenize(text) if t["type"] != "eof"]
    spans = []
    for i, token in enumerate(tokens[:-2]):
        name = tokens[i + 1]
        if token["type"] != "not" or name["type"] not in ("unquoted_identifier", "quoted_identifier", "current") \
                or tokens[i + 2]["type"] != "dot":
            continue
        j, depth = i + 2, 0
        while j < len(tokens):
            kind = tokens[j]["type"]
            if kind in ("lbracket", "filter", "lbrace", "flatten"):
                depth += kind != "flatten"
            elif kind in ("rbracket", "rbrace") and depth:
                depth -= 1
            elif not depth and kind != "dot" and tokens[j - 1]["type"] != "dot":
                break
            j += 1
        end = tokens[j]["start"] if j < len(tokens) else len(text)  # the lexer's own "end" is not always right
        spans.append((name["start"], len(text[:end].rstrip())))
    for start, end in reversed(spans):
        text = text[:start] + "(" + text[start:end] + ")" + text[end:]
    return text
