"""Masker: every form of a secret is hidden wherever it sits in displayed data."""
import base64
from urllib.parse import quote

import pytest

from engine.secrets import MASK, MIN_PART, Masker

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


def test_every_percent_encoded_form_is_masked():
    """A secret with a space and a slash: as a path segment (%20, %2F), in a path, and as a query value (+)."""
    secret = "key/with space"
    for form in ("key%2Fwith%20space", "key/with%20space", "key%2Fwith+space"):
        assert Masker({secret}).text(f"https://x.test/a?k={form}&n=1") == f"https://x.test/a?k={MASK}&n=1"


COMPOSITE = "crispid-77:CRISPKEY-s3cr3t-xyz"


def test_each_part_of_a_composite_secret_is_masked_where_a_vendor_echoes_it():
    """Crisp's identifier:key, echoed by an answer as its two halves, in either order."""
    echoed = "invalid key 'CRISPKEY-s3cr3t-xyz' for identifier 'crispid-77'"
    assert Masker({COMPOSITE}).text(echoed) == f"invalid key '{MASK}' for identifier '{MASK}'"
    encoded = base64.b64encode(b"token=CRISPKEY-s3cr3t-xyz").decode()   # inside base64 too
    assert MASK in Masker({COMPOSITE}).text(encoded)
    assert Masker({COMPOSITE}).data({"id": "crispid-77", "list": ["CRISPKEY-s3cr3t-xyz"]}) == {"id": MASK,
                                                                                           "list": [MASK]}


def test_a_password_holding_colons_is_masked_whole_after_the_first_colon():
    """Basic auth splits at the first ':' only: the password half is a part of its own."""
    secret = "account-1:pass:word:with:colons"
    assert Masker({secret}).text("echo pass:word:with:colons") == f"echo {MASK}"


@pytest.mark.parametrize("secret, text", [
    ("api:key-0123456789", "the api answered: key-0123456789"),
    ("user:pa55word-9f", "no such user: pa55word-9f"),
    ("dry-run:key", "dry-run: the key was refused"),
])
def test_parts_shorter_than_min_part_are_left_to_the_whole(secret, text):
    masked = Masker({secret}).text(text)
    for part in secret.split(":"):
        if len(part) >= MIN_PART:
            assert part not in masked
        else:
            assert part in masked   # a short word of ordinary text stays
    assert Masker({secret}).text(f"<{secret}>") == f"<{MASK}>"


def test_min_part_is_the_documented_six():
    assert MIN_PART == 6
    assert Masker({"abcdef:ghijk"}).text("abcdef ghijk") == f"{MASK} ghijk"
