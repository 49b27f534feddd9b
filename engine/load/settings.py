"""Destination settings: declared as a JSON Schema in YAML, resolved per use.

Values come from what the caller passes, then from environment variables
named ``EVENTMAP_<DESTINATION>_<SETTING>``, then from the schema's defaults;
the result is validated before anything is rendered, so a missing API key is
one clear configuration error and not a broken request.
"""
from __future__ import annotations

import os
from functools import cached_property

import jsonschema_rs

from ..problems import Problem


class SettingsSpec:
    def __init__(self, slug: str, schema: dict):
        self.slug = slug
        self.schema = schema
        self.properties: dict = schema.get("properties", {})
        self.required: list = schema.get("required", [])
        self.secret_names = frozenset(k for k, v in self.properties.items() if v.get("secret"))

    @cached_property
    def _fast(self):
        """jsonschema-rs, made when first needed (of many loaded destinations, a process may route to a few),
        for the quick yes; jsonschema, imported only then, explains settings that fail. None: a schema
        jsonschema-rs refuses, which jsonschema then decides on, as it always did."""
        try:
            return jsonschema_rs.Draft202012Validator(self.schema)
        except ValueError:
            return None

    def _errors(self, settings: dict) -> list:
        if self._fast is not None and _surely_valid(self._fast, settings):
            return []
        from jsonschema import Draft202012Validator
        return list(Draft202012Validator(self.schema).iter_errors(settings))

    def env_name(self, key: str) -> str:
        return f"EVENTMAP_{self.slug.upper().replace('-', '_')}_{key.upper()}"

    def resolve(self, given: dict | None, environ=None) -> tuple[dict, list[Problem]]:
        environ = os.environ if environ is None else environ
        given = dict(given or {})
        problems = [Problem(f"settings.{key}", f"{self.slug}: unknown setting (declared: {', '.join(sorted(self.properties))})")
                    for key in given if key not in self.properties]
        settings = {}
        for key, spec in self.properties.items():
            if key in given and given[key] is not None:
                settings[key] = given[key]
            elif self.env_name(key) in environ:
                settings[key] = _from_env(environ[self.env_name(key)], spec.get("type"))
            elif "default" in spec:
                settings[key] = spec["default"]
        for key in self.required:
            if key not in settings:
                problems.append(Problem(f"settings.{key}", f"{self.slug}: '{key}' is required: pass it in the settings "
                                        f"or set {self.env_name(key)}"))
        for error in self._errors(settings):
            if error.validator == "required":
                continue  # reported above, one line per missing setting
            else:
                key = ".".join(str(p) for p in error.absolute_path)
                shown = "***" if key in self.secret_names else repr(error.instance)
                problems.append(Problem(f"settings.{key}", f"{self.slug}: {shown} is not valid: expected {error.validator} {error.validator_value}"))
        for key in self.properties:
            settings.setdefault(key, None)
        return settings, problems

    def secrets_in(self, settings: dict) -> frozenset:
        return frozenset(str(settings[k]) for k in self.secret_names if settings.get(k) not in (None, ""))


def _surely_valid(validator, settings: dict) -> bool:
    try:
        return validator.is_valid(settings)
    except Exception:  # noqa: BLE001 - a value that is not JSON (a YAML date...): jsonschema decides
        return False


def _from_env(text: str, kind):
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "boolean":
        return text.strip().lower() in ("1", "true", "yes", "on")
    return text
