"""Masker: every form of a secret is hidden wherever it sits in displayed data."""
import base64
from urllib.parse import quote

import pytest

from engine.secrets import MASK, Masker

BODY = {"user": "u1", "items": [{"sku": "A-1", "price": 9.5}, None, True, 2 ** 70], "note": "é\u2028"}


def test_data_without_a_secret_comes_back_equal():
    assert Masker({"s3cr3t-token"}).data(BODY) == BODY
    assert Masker(set()).data(BODY) is BODY


@pytest.mark.parametrize("secret", ["s3cr3t-token", 'quo"te-secret', "back\\slash-secret", "new\nline-secret",
                                    "tab\tsecret-value", "ünïcode-sécret"])
def test_a_secret_anywhere_in_nested_data_is_masked(secret):
    data = {"a": [{"b": f"x{secret}y"}], secret: 1, "c": {"d": [secret]}, "n": 2 ** 70, 5: "int key"}
    masked = Masker({secret}).data(data)
    assert secret not in repr(masked)
    assert masked["a"][0]["b"] == f"x{MASK}y" and masked["c"]["d"] == [MASK] and masked[MASK] == 1
    assert masked["n"] == 2 ** 70 and masked[5] == "int key"


def test_encoded_forms_are_masked_in_data_too():
    secret = "key/with space"
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    data = {"url": f"https://x.test/{quote(secret, safe='')}", "auth": f"Basic {basic}", "raw": [secret]}
    assert not any(form in repr(Masker({secret}).data(data)) for form in (secret, quote(secret, safe=""), basic[8:]))


def test_the_original_data_is_never_changed():
    data = {"token": "s3cr3t-token", "list": ["s3cr3t-token"]}
    Masker({"s3cr3t-token"}).data(data)
    assert data == {"token": "s3cr3t-token", "list": ["s3cr3t-token"]}
