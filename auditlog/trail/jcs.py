"""RFC 8785 JSON Canonicalization Scheme (JCS), standard library only.

``canonical(value)`` returns the one byte string RFC 8785 assigns to a JSON value built from
dict (str keys), list/tuple, str, int, float, bool and None:

- no whitespace; object members sorted by the UTF-16 code units of their names (§3.2.3), which
  is not Python's code point order: U+1F600 (UTF-16 D83D DE00) sorts before U+FB01;
- strings as ECMAScript ``JSON.stringify`` writes them (§3.2.2.2): ``\\b \\t \\n \\f \\r \\" \\\\``
  as two-character escapes, the other controls below U+0020 as ``\\u00xx``, all else literally;
- numbers as ECMAScript ``Number.prototype.toString`` writes the IEEE 754 double (§3.2.2.3);
- UTF-8 output.

It refuses, rather than guess, what has no single canonical form under RFC 8785's I-JSON
(RFC 7493) data model:

- ValueError for NaN and infinities (not JSON numbers), for strings holding surrogate code
  points (not Unicode text: they have no UTF-8 form), and for Python ints beyond 2**53 in
  magnitude (outside I-JSON's interoperable range: every JCS implementation reads numbers as
  doubles, so such an int would be rounded and two different values would hash the same;
  callers must reject them where the input arrives);
- TypeError for non-str object keys and for any type that is not one of the above.
"""

import math
import re
from json.encoder import encode_basestring

__all__ = ["canonical", "string", "text", "utf8"]

MAX_EXACT_INT = 2**53

_SURROGATE = re.compile("[\ud800-\udfff]")


def canonical(value) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (see the module docstring)."""
    return utf8(text(value))


def text(value) -> str:
    """The canonical JSON as text, before utf8(): for a caller that writes a larger canonical
    document around it (the trail's leaves)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def utf8(text: str) -> bytes:
    """UTF-8 of canonical text; a surrogate (which a JSON string may hold, Unicode text may
    not) is a ValueError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate in a string or a key: name it
        match = _SURROGATE.search(text)
        raise ValueError(
            f"string holds the surrogate code point U+{ord(match.group()):04X}:"
            " it is not Unicode text and has no canonical form"
        ) from None


def _write(value, out: list[str]) -> None:
    # bool before int: True is an int in Python.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}: {key!r}")
        if all(key.isascii() for key in value):
            keys = sorted(value)  # ASCII: code points and UTF-16 code units agree
        else:
            # Big-endian UTF-16 bytes compare as the code units do (surrogates kept, to be refused).
            keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, (name, item) in enumerate((encode_basestring(key), value[key]) for key in keys):
            if i:
                out.append(",")
            out.append(name)
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


# JSON.stringify's escapes are Python's json escapes with ensure_ascii off: the short ones it
# has, \u00xx (lowercase hex) for the other controls, everything else as is (tests/test_jcs.py).
# A surrogate passes through here and is refused when canonical() encodes the text as UTF-8.
_string = string = encode_basestring


def _integer(n: int) -> str:
    if abs(n) > MAX_EXACT_INT:
        raise ValueError(
            f"integer {n} is outside the interoperable range of RFC 7493 (I-JSON), magnitude at most 2**53:"
            " as an IEEE 754 double it would lose precision"
        )
    return str(int(n))  # an exact double: Number::toString gives its plain decimal digits


def _number(x: float) -> str:
    """ECMA-262 Number::toString(x) for a finite double, from Python's shortest round-trip digits."""
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a JSON number (RFC 8785 §3.2.2.3 excludes NaN and Infinity)")
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip, nearest to x when several do: the s of
    # ECMA-262 Number::toString. Read them as x = 0.<digits> * 10**n.
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    n = len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + text
