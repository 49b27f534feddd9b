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


def test_data_holding_every_form_of_a_secret_at_once_is_masked():
    from engine.secrets import needles
    secret = "plainsecret42"
    data = {"forms": needles(secret), "raw": secret}
    masked = Masker({secret}).data(data)
    assert masked == {"forms": [MASK] * len(needles(secret)), "raw": MASK}


def test_only_set_secrets_get_a_sentinel():
    from engine.secrets import with_sentinels
    twin, sentinels = with_sentinels({"a": "", "b": None, "c": "value", "d": "not secret"}, ["a", "b", "c"])
    assert twin["a"] == "" and twin["b"] is None and twin["d"] == "not secret"
    assert list(sentinels.values()) == ["value"] and twin["c"] in sentinels


@pytest.mark.parametrize("secret", ['quo"te-secret', "back\\slash-secret", "new\nline-secret", "ctl\x01secret"])
def test_a_secret_json_writes_escaped_is_masked_in_data_with_string_keys(secret):
    """Such a secret is not found in the data written as JSON (JSON escapes it), so the data is walked."""
    masked = Masker({secret}).data({"a": [{"b": f"x{secret}y"}], "c": secret})
    assert masked == {"a": [{"b": f"x{MASK}y"}], "c": MASK}


@pytest.mark.parametrize("secret, before, after, shown", [
    (b"s3cr3t-value", b"", b"", (0, 0)),       # 12 bytes, aligned: every character is the secret's alone
    (b"s3cr3t-value", b"a", b"bc", (2, 4)),    # a byte before: the 2 characters holding it stay, and the last group
    (b"s3cr3t-value", b"ab", b"c", (3, 4)),    # two bytes before: 3 characters hold them
    (b"s3cr3t-value", b"", b"x", (0, 4)),      # a byte after: the group holding it stays
    (b"s3cr3t-value1", b"", b"xy", (0, 4)),    # 13 bytes: the secret ends inside the last group
    (b"s3cr3t-value1", b"a", b"x", (2, 4)),
    (b"s3cr3t-value1", b"ab", b"", (3, 0)),    # ... or, two bytes in, exactly at its end
])
def test_a_secret_inside_base64_is_masked_at_every_alignment(secret, before, after, shown):
    """The characters that carry only the secret's bits are masked; those mixed with its neighbours stay
    (they depend on the neighbours), and so does the last group when the secret ends inside it."""
    text = base64.b64encode(before + secret + after).decode()
    head, tail = shown
    assert Masker({secret.decode()}).text(text) == text[:head] + MASK + text[len(text) - tail:]


def test_a_base64_core_of_exactly_min_encoded_characters_is_masked():
    """A 3-byte secret, aligned, is 4 base64 characters: MIN_ENCODED, still looked for."""
    from engine.secrets import MIN_ENCODED
    assert MIN_ENCODED == 4
    text = base64.b64encode(b"abc" + b"-tail-of-other-bytes").decode()
    assert Masker({"abc"}).text(text).startswith(MASK)


def test_masked_twin_masks_whole_what_a_secret_changed_the_shape_of():
    from engine.secrets import masked_twin
    assert masked_twin({"a": 1}, {"b": 1}, {}) == MASK      # keys that differ
    assert masked_twin([1, 2], [1], {}) == MASK             # lengths that differ
    assert masked_twin(5, "x", {}) == MASK                  # types that differ
    assert masked_twin({"a": [1, "x"]}, {"a": [1, "x"]}, {}) == {"a": [1, "x"]}
