"""An offline EventBridge event-pattern engine: `matches(pattern, event)` and `validate_pattern(pattern)`.

Written from the EventBridge documentation ("Content filtering in Amazon EventBridge event patterns")
and aws/event-ruler's documented behaviour, because moto's `test_event_pattern` always answers `{}`,
moto accepts invalid patterns, and its matcher fails on arrays of objects (docs/replay.md has the
table of features, moto's behaviour and this engine's).

Semantics, in short:
- A pattern is a JSON object. Its leaves are arrays of matchers, OR-ed; its fields are AND-ed.
- A matcher is an exact JSON value (string, number, boolean, null) or an object with one operator:
  prefix, suffix, anything-but, numeric, exists, cidr, equals-ignore-case, wildcard.
- `$or` holds a list of sub-patterns, one of which must match at that level.
- An event array matches a leaf when any element matches. Arrays of objects are matched element by
  element: the fields of one sub-pattern must all match within the same element (event-ruler's
  array-consistent matching, which EventBridge uses).
- A key with dots is a key with dots: it matches the event key spelled the same way.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from functools import lru_cache
from typing import Any

_MISSING = object()
MAX_OR_COMBINATIONS = 1000
NUMERIC_LIMIT = 5e9  # EventBridge's numeric matching range is -5.0e9 to 5.0e9
_COMPARATORS = {"<", "<=", "=", ">", ">="}
_OPERATORS = {"prefix", "suffix", "anything-but", "numeric", "exists", "cidr", "equals-ignore-case", "wildcard"}


class InvalidEventPattern(ValueError):
    """A pattern EventBridge would refuse. The message is close to AWS's."""

    def __init__(self, reason: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__(f"Event pattern is not valid. Reason: {reason}{where}")
        self.reason = reason
        self.path = path


def _parse(value: Any, what: str) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError as exc:
            if what == "pattern":
                raise InvalidEventPattern(f"the pattern is not valid JSON ({exc})") from exc
            raise ValueError(f"the event is not valid JSON ({exc})") from exc
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- validation -------------------------------------------------------------------------------------


def validate_pattern(pattern: Any) -> None:
    """Raise InvalidEventPattern unless EventBridge would accept `pattern` (JSON text or parsed)."""
    _validated(_canonical_text(_parse(pattern, "pattern")))


def _canonical_text(pattern: Any) -> str:
    try:
        return json.dumps(pattern, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidEventPattern(f"the pattern is not JSON ({exc})") from exc


@lru_cache(maxsize=512)
def _validated(text: str) -> Any:
    """Validate once per distinct pattern; returns the parsed pattern."""
    pattern = json.loads(text)
    if not isinstance(pattern, dict):
        raise InvalidEventPattern("Filter is not an object")
    if not pattern:
        raise InvalidEventPattern("Empty objects are not allowed")
    _check_object(pattern, "")
    combinations = _combinations(pattern)
    if combinations > MAX_OR_COMBINATIONS:
        raise InvalidEventPattern(
            f"The event pattern is too complex: its $or expands to {combinations} combinations "
            f"(at most {MAX_OR_COMBINATIONS})"
        )
    return pattern


def _check_object(node: dict[str, Any], path: str) -> None:
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(p, dict) and p for p in value):
                raise InvalidEventPattern("$or must be an array of at least two non-empty objects", where)
            for index, branch in enumerate(value):
                _check_object(branch, f"{where}[{index}]")
        elif isinstance(value, dict):
            if not value:
                raise InvalidEventPattern("Empty objects are not allowed", where)
            _check_object(value, where)
        elif isinstance(value, list):
            if not value:
                raise InvalidEventPattern("Empty arrays are not allowed", where)
            for matcher in value:
                _check_matcher(matcher, where)
        else:
            raise InvalidEventPattern(f'"{key}" must be an object or an array, not {json.dumps(value)}', where)


def _check_string(value: Any, operator: str, where: str) -> None:
    if not isinstance(value, str):
        raise InvalidEventPattern(f"{operator} match pattern must be a string", where)


def _check_prefix_or_suffix(value: Any, operator: str, where: str) -> None:
    if isinstance(value, dict):
        if set(value) != {"equals-ignore-case"}:
            raise InvalidEventPattern(f"Unsupported {operator} pattern: {sorted(value)}", where)
        _check_string(value["equals-ignore-case"], f"{operator} equals-ignore-case", where)
    else:
        _check_string(value, operator, where)


def _check_wildcard(value: Any, where: str) -> None:
    _check_string(value, "wildcard", where)
    if "**" in value:
        raise InvalidEventPattern("Consecutive wildcard characters at pos", where)


def _check_matcher(matcher: Any, where: str) -> None:
    if matcher is None or isinstance(matcher, str | bool) or _is_number(matcher):
        return
    if isinstance(matcher, list):
        raise InvalidEventPattern("Match value must be String, number, true, false, or null; found an array", where)
    if not isinstance(matcher, dict) or len(matcher) != 1:
        raise InvalidEventPattern("A match object must hold exactly one operator", where)
    [(operator, value)] = matcher.items()
    if operator not in _OPERATORS:
        raise InvalidEventPattern(f"Unrecognized match type {operator}", where)
    if operator in ("prefix", "suffix"):
        _check_prefix_or_suffix(value, operator, where)
    elif operator == "equals-ignore-case":
        _check_string(value, operator, where)
    elif operator == "wildcard":
        _check_wildcard(value, where)
    elif operator == "exists":
        if not isinstance(value, bool):
            raise InvalidEventPattern("exists match pattern must be either true or false.", where)
    elif operator == "cidr":
        _check_string(value, "cidr", where)
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise InvalidEventPattern(f"Nonstandard IP address or invalid cidr: {value}", where) from exc
    elif operator == "numeric":
        _check_numeric(value, where)
    else:
        _check_anything_but(value, where)


def _check_numeric(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) not in (2, 4):
        raise InvalidEventPattern("Value of numeric must be an array of one or two comparisons", where)
    pairs = [(value[i], value[i + 1]) for i in range(0, len(value), 2)]
    for comparator, bound in pairs:
        if comparator not in _COMPARATORS:
            raise InvalidEventPattern(f"Unrecognized numeric range operator: {comparator!r}", where)
        if not _is_number(bound) or not math.isfinite(bound):
            raise InvalidEventPattern(f"Value of {comparator} must be numeric", where)
        if abs(bound) > NUMERIC_LIMIT:
            raise InvalidEventPattern(f"Value of numeric {comparator} must be between -5.0E9 and 5.0E9", where)
    if len(pairs) == 2:
        (low_op, low), (high_op, high) = pairs
        if low_op not in (">", ">=") or high_op not in ("<", "<="):
            raise InvalidEventPattern(
                "Bad numeric range: a range is a lower bound (> or >=), then an upper bound", where
            )
        if low >= high:
            raise InvalidEventPattern("Bad numeric range: the bottom must be less than the top", where)
    elif pairs[0][0] == "=" and len(pairs) != 1:
        raise InvalidEventPattern("numeric = takes no second comparison", where)


def _check_anything_but(value: Any, where: str) -> None:
    if isinstance(value, dict):
        if len(value) != 1:
            raise InvalidEventPattern("anything-but takes one of prefix, suffix, wildcard, equals-ignore-case", where)
        [(operator, operand)] = value.items()
        if operator in ("prefix", "suffix"):
            operands = operand if isinstance(operand, list) else [operand]
            if not operands:
                raise InvalidEventPattern(f"Empty arrays are not allowed in anything-but {operator}", where)
            for item in operands:
                _check_string(item, f"anything-but {operator}", where)
                if item == "":
                    raise InvalidEventPattern(f"Null {operator} not allowed", where)
        elif operator in ("wildcard", "equals-ignore-case"):
            operands = operand if isinstance(operand, list) else [operand]
            if not operands:
                raise InvalidEventPattern(f"Empty arrays are not allowed in anything-but {operator}", where)
            for item in operands:
                if operator == "wildcard":
                    _check_wildcard(item, where)
                else:
                    _check_string(item, f"anything-but {operator}", where)
        else:
            raise InvalidEventPattern(f"Unsupported anything-but pattern: {operator}", where)
    elif isinstance(value, list):
        if not value:
            raise InvalidEventPattern("Empty arrays are not allowed in anything-but", where)
        if not all(isinstance(item, str) for item in value) and not all(_is_number(item) for item in value):
            raise InvalidEventPattern("Inside anything-but list, start|null|boolean is not supported", where)
    elif not (isinstance(value, str) or _is_number(value)):
        raise InvalidEventPattern("Inside anything but list, start|null|boolean is not supported.", where)


def _combinations(node: dict[str, Any]) -> int:
    total = 1
    for key, value in node.items():
        if key == "$or":
            total *= sum(_combinations(branch) for branch in value)
        elif isinstance(value, dict):
            total *= _combinations(value)
    return total


# --- matching ---------------------------------------------------------------------------------------


def matches(pattern: Any, event: Any) -> bool:
    """Whether EventBridge would route `event` to a rule with `pattern` (each JSON text or parsed)."""
    parsed = pattern if isinstance(pattern, dict) and _known_valid(pattern) else None
    if parsed is None:
        parsed = _validated(_canonical_text(_parse(pattern, "pattern")))
    return _match_object(parsed, _parse(event, "event"))


_valid_ids: dict[int, Any] = {}


def _known_valid(pattern: dict[str, Any]) -> bool:
    """A parsed pattern seen before (the same object) skips re-serialising: the hot path of filtering
    an archive matches one pattern against many events."""
    return _valid_ids.get(id(pattern)) is pattern


def compile_pattern(pattern: Any) -> dict[str, Any]:
    """Validate once and return a pattern object `matches` recognises without re-validating."""
    parsed = _validated(_canonical_text(_parse(pattern, "pattern")))
    if len(_valid_ids) > 512:
        _valid_ids.clear()
    _valid_ids[id(parsed)] = parsed
    return parsed


def _match_object(pattern: dict[str, Any], node: Any) -> bool:
    for key, sub in pattern.items():
        if key == "$or":
            if not any(_match_object(branch, node) for branch in sub):
                return False
            continue
        value = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if isinstance(sub, dict):
            if not _match_nested(sub, value):
                return False
        elif not _match_leaf(sub, value):
            return False
    return True


def _match_nested(pattern: dict[str, Any], value: Any) -> bool:
    if isinstance(value, list):
        # Array-consistent: one element must satisfy every field of the sub-pattern.
        return any(_match_nested(pattern, element) for element in value)
    if isinstance(value, dict):
        return _match_object(pattern, value)
    # A field missing (or not an object) can still satisfy a sub-pattern made only of exists: false.
    return _match_object(pattern, {})


def _match_leaf(matchers: list[Any], value: Any) -> bool:
    # Only leaves are values: an object (or an array of nothing but objects, or nothing) is not one.
    candidates = [] if value is _MISSING else list(value if isinstance(value, list) else [value])
    candidates = [c for c in candidates if not isinstance(c, dict)]
    if not candidates:
        return any(isinstance(m, dict) and m.get("exists") is False for m in matchers)
    for matcher in matchers:
        if isinstance(matcher, dict):
            [(operator, operand)] = matcher.items()
            if operator == "exists":
                if operand:
                    return True
                continue
            if operator == "anything-but":
                # Each element of an event array is a value of its own: any one not excluded matches.
                if any(_anything_but(operand, candidate) for candidate in candidates):
                    return True
                continue
            if any(_operator_matches(operator, operand, candidate) for candidate in candidates):
                return True
        elif any(_equals(matcher, candidate) for candidate in candidates):
            return True
    return False


def _equals(expected: Any, actual: Any) -> bool:
    if _is_number(expected) and _is_number(actual):
        return float(expected) == float(actual)
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        return expected is actual or (expected == actual and type(expected) is type(actual))
    return isinstance(actual, str) and expected == actual


def _operator_matches(operator: str, operand: Any, value: Any) -> bool:
    if operator == "numeric":
        return _is_number(value) and _numeric(operand, float(value))
    if not isinstance(value, str):
        return False
    if operator == "prefix":
        if isinstance(operand, dict):
            return value.casefold().startswith(operand["equals-ignore-case"].casefold())
        return value.startswith(operand)
    if operator == "suffix":
        if isinstance(operand, dict):
            return value.casefold().endswith(operand["equals-ignore-case"].casefold())
        return value.endswith(operand)
    if operator == "equals-ignore-case":
        return value.casefold() == operand.casefold()
    if operator == "wildcard":
        return _wildcard(operand).fullmatch(value) is not None
    if operator == "cidr":
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(operand, strict=False)
        except ValueError:
            return False
    return False


def _numeric(operand: list[Any], value: float) -> bool:
    for index in range(0, len(operand), 2):
        comparator, bound = operand[index], float(operand[index + 1])
        ok = {
            "<": value < bound,
            "<=": value <= bound,
            "=": value == bound,
            ">": value > bound,
            ">=": value >= bound,
        }[comparator]
        if not ok:
            return False
    return True


@lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    parts, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "*\\":
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def _anything_but(operand: Any, value: Any) -> bool:
    """True when `value` is not excluded by anything-but `operand`."""
    if isinstance(operand, dict):
        [(operator, inner)] = operand.items()
        if not isinstance(value, str):
            return True  # string operators exclude strings only
        items = inner if isinstance(inner, list) else [inner]
        if operator == "prefix":
            return not value.startswith(tuple(items))
        if operator == "suffix":
            return not value.endswith(tuple(items))
        if operator == "wildcard":
            return not any(_wildcard(item).fullmatch(value) for item in items)
        return not any(value.casefold() == item.casefold() for item in items)
    excluded = operand if isinstance(operand, list) else [operand]
    return not any(_equals(item, value) for item in excluded)
