"""A small deterministic JSON Schema → value generator (tool arguments, structured output).

:func:`value_for` returns a value valid against the schema for the keywords it knows, which cover
what Pydantic v2's ``model_json_schema()`` emits for typical models (nested models through
``$ref``/``$defs``, ``Optional`` as ``anyOf [X, null]``, ``list[Model]``, ``Literal``/``Enum`` as
``const``/``enum``, tuples as ``prefixItems``, ``dict[str, X]`` as ``additionalProperties``,
constrained numbers and strings), OpenAI strict schemas, and Gemini's OpenAPI subset (upper-case
types, ``nullable``):

* ``$ref`` to ``#/...`` JSON pointers (``$defs``, ``definitions``), its sibling keywords merged in;
  ``allOf`` merged; ``anyOf``/``oneOf`` take their first option (the first non-null one above the
  depth limit, where a null or ref-free option is preferred so recursive models end);
* ``const``, ``enum``, ``type`` (a list takes its first non-null member);
* objects: ``properties``, ``required`` (always present), ``additionalProperties`` (a schema adds
  one or two ``key_N`` entries when there are no named properties), ``minProperties``,
  ``maxProperties``; optional properties appear or not by a seeded draw;
* arrays: ``items``, ``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``;
* numbers: ``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum`` (numeric and the
  draft-4 boolean form), ``multipleOf``;
* strings: ``minLength``/``maxLength``, formats ``date-time``, ``date``, ``time``, ``email``,
  ``uri``/``url``, ``uuid``, ``ipv4``, ``ipv6``, ``hostname``, ``duration``; a ``pattern`` is met
  only when one of a few stock strings matches it (no regex inversion).

Not supported: ``not``, ``if``/``then``/``else``, ``contains``, ``dependentRequired``/``Schemas``,
``patternProperties``/``propertyNames`` constraints on generated extra keys (none are generated then),
and ``oneOf`` options that overlap (the first option's value may match another).
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction
from typing import Any

import orjson

_WORDS = (
    "lorem ipsum dolor sit amet gateway token stream route cache river mountain signal harbor lantern "
    "alpha beta gamma delta paris london tokyo lima oslo quartz maple cedar"
).split()
_MAX_DEPTH = 6
_OPTIONAL_DEPTH = 3
_EXTRA_KEYS_MAX = 2
_HARD_DEPTH = 40


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


class _Gen:
    __slots__ = ("rng", "root")

    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root if isinstance(root, dict) else {}
        self.rng = rng

    # --- schema plumbing -------------------------------------------------------------------------

    def resolve(self, schema: dict[str, Any], seen: int = 0) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or seen > 32:
            return schema
        target: Any = {}
        if ref == "#":
            target = self.root
        elif ref.startswith("#/"):
            node: Any = self.root
            for part in ref[2:].split("/"):
                part = _unescape(part)
                if isinstance(node, dict):
                    node = node.get(part, {})
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    node = {}
            target = node
        if not isinstance(target, dict):
            target = {}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        target = self.resolve(target, seen + 1)
        return merge(target, siblings) if siblings else target

    # --- values ----------------------------------------------------------------------------------

    def value(self, schema: Any, depth: int) -> Any:
        if depth > _HARD_DEPTH:  # a required self-reference has no finite instance
            return None
        if schema is True or schema is None:
            return self.text({})
        if not isinstance(schema, dict):
            return None
        schema = self.resolve(schema)
        desc = schema.get("description")
        if isinstance(desc, str) and desc.endswith("}"):
            schema = described(schema, desc)
        if "const" in schema:
            return schema["const"]
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in all_of:
                if isinstance(part, dict):
                    merged = merge(merged, self.resolve(part))
            return self.value(merged, depth)
        for key in ("anyOf", "oneOf"):
            opts = schema.get(key)
            if isinstance(opts, list) and opts:
                rest = {k: v for k, v in schema.items() if k != key}
                return self.value(merge(rest, self.pick(opts, depth)), depth)
        t = type_of(schema)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            fitting = [e for e in enum if t is None or _fits_type(e, t)] or enum
            return fitting[self.rng.randrange(len(fitting))]
        if t == "object":
            return self.obj(schema, depth)
        if t == "array":
            return self.array(schema, depth)
        if t == "integer":
            return self.integer(schema)
        if t == "number":
            return self.number(schema)
        if t == "boolean":
            return self.rng.random() < 0.5
        if t == "null":
            return None
        return self.text(schema)

    def pick(self, opts: list[Any], depth: int) -> dict[str, Any]:
        dicts = [self.resolve(o) if isinstance(o, dict) else {} for o in opts]
        if depth >= _MAX_DEPTH:
            for o in dicts:
                if type_of(o) == "null":
                    return o
            for raw, o in zip(opts, dicts, strict=True):
                if not (isinstance(raw, dict) and "$ref" in raw):
                    return o
            return dicts[0]
        for o in dicts:
            if type_of(o) != "null":
                return o
        return dicts[0]

    def obj(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = [r for r in schema.get("required") or () if isinstance(r, str)]
        max_props = schema.get("maxProperties")
        min_props = int(schema.get("minProperties") or 0)
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        for name in required:
            sub = props.get(name, extra if isinstance(extra, dict) else {})
            out[name] = self.value(sub, depth + 1)
        optional = [n for n in props if n not in out]
        for name in optional:
            if isinstance(max_props, int) and len(out) >= max_props:
                break
            want = len(out) < min_props or (depth < _OPTIONAL_DEPTH and self.rng.random() < 0.5)
            if want:
                out[name] = self.value(props[name], depth + 1)
        can_add = extra is not False and "patternProperties" not in schema and "propertyNames" not in schema
        if can_add:
            n_extra = 0
            if isinstance(extra, dict) and not props and depth < _MAX_DEPTH:
                n_extra = self.rng.randint(1, _EXTRA_KEYS_MAX)
            n_extra = max(n_extra, min_props - len(out))
            if isinstance(max_props, int):
                n_extra = min(n_extra, max_props - len(out))
            i = 0
            while n_extra > 0:
                i += 1
                key = f"key_{i}"
                if key in out or key in props:
                    continue
                out[key] = self.value(extra if isinstance(extra, dict) else {}, depth + 1)
                n_extra -= 1
        return out

    def array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        if isinstance(items, list):  # draft-4..2019 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        lo = schema.get("minItems")
        hi = schema.get("maxItems")
        lo_n = int(lo) if isinstance(lo, int | float) else None
        hi_n = int(hi) if isinstance(hi, int | float) else None
        if lo_n is None:
            lo_n = 0 if (hi_n == 0 or depth >= _MAX_DEPTH) else 1
        if hi_n is None:
            hi_n = lo_n + 2
        hi_n = max(lo_n, min(hi_n, lo_n + 2))
        if items is False:
            hi_n = min(hi_n, len(prefix))
        count = lo_n if depth >= _MAX_DEPTH else self.rng.randint(lo_n, hi_n)
        count = max(count, min(len(prefix), hi_n)) if prefix else count
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[bytes] = set()
        tries = 0
        while len(out) < count and tries < count * 8 + 8:
            tries += 1
            i = len(out)
            sub = prefix[i] if i < len(prefix) else items
            v = self.value(sub, depth + 1)
            if unique:
                k = _canon(v)
                if k in seen:
                    continue
                seen.add(k)
            out.append(v)
        if unique and len(out) < lo_n:
            out = self.fill_unique(items, out, seen, lo_n)
        return out

    def fill_unique(self, items: Any, out: list[Any], seen: set[bytes], want: int) -> list[Any]:
        sub = self.resolve(items) if isinstance(items, dict) else {}
        pool: list[Any] = []
        if isinstance(sub.get("enum"), list):
            pool = list(sub["enum"])
        elif type_of(sub) == "boolean":
            pool = [True, False]
        elif type_of(sub) in ("integer", "number"):
            base = self.integer(sub) if type_of(sub) == "integer" else self.number(sub)
            pool = [base + i for i in range(-want, want * 2)] + [base - i for i in range(want * 2)]
            pool = [v for v in pool if self.fits_bounds(v, sub)]
        elif type_of(sub) in (None, "string"):
            pool = [f"{self.text(sub)}{i}" for i in range(want * 2)]
        for v in pool:
            if len(out) >= want:
                break
            k = _canon(v)
            if k not in seen:
                seen.add(k)
                out.append(v)
        return out

    def fits_bounds(self, v: float, schema: dict[str, Any]) -> bool:
        lo, hi = _bounds(schema)
        if lo is not None and (v < lo[0] or (lo[1] and v == lo[0])):
            return False
        if hi is not None and (v > hi[0] or (hi[1] and v == hi[0])):
            return False
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            return _multiple(v, step)
        return True

    def integer(self, schema: dict[str, Any]) -> int:
        lo, hi = _bounds(schema)
        ilo = None if lo is None else (math.floor(lo[0]) + 1 if lo[1] else math.ceil(lo[0]))
        ihi = None if hi is None else (math.ceil(hi[0]) - 1 if hi[1] else math.floor(hi[0]))
        if ilo is None and ihi is None:
            ilo, ihi = 0, 100
        elif ilo is None:
            ilo = ihi - 100  # type: ignore[operator]
        elif ihi is None:
            ihi = ilo + 100
        assert ilo is not None and ihi is not None
        if ihi < ilo:
            return ilo
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            m = Fraction(str(step)).numerator  # integer multiples of p/q are the multiples of p
            k_lo, k_hi = -((-ilo) // m), ihi // m
            if k_hi < k_lo:
                return ilo
            first = self.rng.randint(k_lo, min(k_hi, k_lo + 100))
            for k in (first, *range(k_lo, min(k_hi, k_lo + 200) + 1)):
                if _multiple(k * m, step):
                    return k * m
            return 0 if ilo <= 0 <= ihi else ilo
        return self.rng.randint(ilo, ihi)

    def number(self, schema: dict[str, Any]) -> float | int:
        lo, hi = _bounds(schema)
        flo = lo[0] if lo is not None else None
        fhi = hi[0] if hi is not None else None
        if flo is None and fhi is None:
            flo, fhi = 0.0, 100.0
        elif flo is None:
            flo = fhi - 100.0  # type: ignore[operator]
        elif fhi is None:
            fhi = flo + 100.0
        assert flo is not None and fhi is not None

        def ok(v: float) -> bool:
            if lo is not None and (v < lo[0] or (lo[1] and v == lo[0])):
                return False
            return not (hi is not None and (v > hi[0] or (hi[1] and v == hi[0])))

        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            k_lo, k_hi = math.ceil(flo / step), math.floor(fhi / step)
            ks = [self.rng.randint(k_lo, max(k_lo, min(k_hi, k_lo + 100)))] if k_hi >= k_lo else []
            ks += list(range(k_lo, min(k_hi, k_lo + 20) + 1))
            for k in ks:
                for v in (k * step, round(k * step, 10)):
                    if ok(v) and _multiple(v, step):
                        return v
            return 0 if ok(0) else flo
        v = self.rng.uniform(flo, fhi)
        for cand in (round(v, 2), v, (flo + fhi) / 2):
            if ok(cand):
                return cand
        return flo

    def text(self, schema: dict[str, Any]) -> str:
        rng = self.rng
        fmt = schema.get("format")
        s: str | None = None
        if fmt == "date-time":
            s = f"2026-01-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        elif fmt == "date":
            s = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "time":
            s = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        elif fmt in ("email", "idn-email"):
            s = f"{rng.choice(_WORDS)}@example.com"
        elif fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            s = f"https://example.com/{rng.choice(_WORDS)}"
        elif fmt == "uuid":
            h = f"{rng.getrandbits(128):032x}"
            s = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
        elif fmt == "ipv4":
            s = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        elif fmt == "ipv6":
            s = "2001:db8::" + f"{rng.randint(1, 0xFFFF):x}"
        elif fmt in ("hostname", "idn-hostname"):
            s = f"{rng.choice(_WORDS)}.example.com"
        elif fmt == "duration":
            s = f"PT{rng.randint(1, 59)}M"
        if s is None:
            s = " ".join(rng.choices(_WORDS, k=rng.randint(1, 3)))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            s = _matching(pattern, s, rng)
        min_len = schema.get("minLength")
        max_len = schema.get("maxLength")
        if isinstance(min_len, int) and len(s) < min_len:
            pad = " ".join(rng.choices(_WORDS, k=min_len // 3 + 2))
            s = (s + " " + pad)[: max(min_len, len(s))]
            while len(s) < min_len:
                s += "x"
        if isinstance(max_len, int) and len(s) > max_len:
            s = s[:max_len]
        return s


_HINT_KEYS = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "uniqueItems",
    "format",
}
_HINT_BLOCK = re.compile(r"\{([^{}]*)\}\s*$")
_HINT_PAIR = re.compile(r"(\w+): ([^,]+)")


def described(schema: dict[str, Any], desc: str) -> dict[str, Any]:
    """Constraints a client moved into the description, as the Anthropic SDK does for keywords its
    structured outputs do not take (``"the name\\n\\n{maxLength: 8, minLength: 2}"``); a model reads
    them, so the simulator honours them too."""
    m = _HINT_BLOCK.search(desc)
    if m is None:
        return schema
    extra: dict[str, Any] = {}
    for key, raw in _HINT_PAIR.findall(m.group(1)):
        if key not in _HINT_KEYS or key in schema:
            continue
        raw = raw.strip()
        if raw in ("True", "true", "False", "false"):
            extra[key] = raw in ("True", "true")
            continue
        try:
            num = float(raw)
        except ValueError:
            if key == "format":
                extra[key] = raw
            continue
        extra[key] = int(num) if num.is_integer() and "." not in raw else num
    return {**schema, **extra} if extra else schema


def _matching(pattern: str, default: str, rng: random.Random) -> str:
    try:
        rx = re.compile(pattern)
    except re.error:
        return default
    stock = [default, "abc", "a", "A", "0", "42", "a1", "ABC", "abc123", "2026-01-01", "x@example.com", ""]
    stock += rng.sample(_WORDS, 3)
    for s in stock:
        if rx.search(s):
            return s
    return default


def _bounds(schema: dict[str, Any]) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """((low, exclusive) | None, (high, exclusive) | None) from draft-4 and draft-6+ keywords."""

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    lo: tuple[float, bool] | None = None
    hi: tuple[float, bool] | None = None
    mn, mx = num(schema.get("minimum")), num(schema.get("maximum"))
    emn, emx = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if mn is not None:
        lo = (mn, emn is True)
    if mx is not None:
        hi = (mx, emx is True)
    if num(emn) is not None and (lo is None or num(emn) >= lo[0]):  # type: ignore[operator]
        lo = (num(emn), True)  # type: ignore[assignment]
    if num(emx) is not None and (hi is None or num(emx) <= hi[0]):  # type: ignore[operator]
        hi = (num(emx), True)  # type: ignore[assignment]
    return lo, hi


def _multiple(v: float, step: float) -> bool:
    """The test jsonschema applies: float quotient for a float step, a remainder for an int one."""
    if isinstance(step, float):
        q = v / step
        return math.isfinite(q) and int(q) == q
    return v % step == 0


def _canon(v: Any) -> bytes:
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)


def _fits_type(v: Any, t: str) -> bool:
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    return True


def type_of(schema: dict[str, Any]) -> str | None:
    """The JSON type a schema asks for (first non-null of a list; inferred from keywords)."""
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if str(x).lower() != "null"]
        t = non_null[0] if non_null else "null"
    if isinstance(t, str):
        return t.lower()
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema or "multipleOf" in schema:
        return "number"
    return None


_TIGHTER_MAX = ("minimum", "exclusiveMinimum", "minItems", "minLength", "minProperties")
_TIGHTER_MIN = ("maximum", "exclusiveMaximum", "maxItems", "maxLength", "maxProperties")


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Conjunction of two schemas, good enough for ``allOf`` and ``$ref`` siblings."""
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif k == "properties" and isinstance(v, dict) and isinstance(out[k], dict):
            props = dict(out[k])
            for name, sub in v.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[k] = props
        elif k == "required" and isinstance(v, list) and isinstance(out[k], list):
            out[k] = list(dict.fromkeys([*out[k], *v]))
        elif k in _TIGHTER_MAX and _is_num(v) and _is_num(out[k]):
            out[k] = max(out[k], v)
        elif k in _TIGHTER_MIN and _is_num(v) and _is_num(out[k]):
            out[k] = min(out[k], v)
        elif k == "enum" and isinstance(v, list) and isinstance(out[k], list):
            both = [x for x in out[k] if x in v]
            out[k] = both or v
        elif k in ("allOf", "anyOf", "oneOf") and isinstance(v, list) and isinstance(out[k], list):
            if k == "allOf":
                out[k] = [*out[k], *v]
            else:
                out.setdefault("allOf", [])
                out["allOf"] = [*out["allOf"], {k: v}]
        else:
            out[k] = v
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def value_for(schema: Any, rng: random.Random, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A JSON value valid against ``schema`` (see the module docstring for the keywords covered)."""
    return _Gen(root if root is not None else schema, rng).value(schema, depth)


def object_for(schema: Any, rng: random.Random) -> dict[str, Any]:
    """Tool arguments: always an object, whatever the schema says at its top."""
    v = value_for(schema, rng)
    return v if isinstance(v, dict) else {}


_SCHEMA_KEYS = ("properties", "$defs", "definitions", "anyOf", "oneOf", "allOf", "items", "$ref")


def looks_like_schema(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if any(k in obj for k in _SCHEMA_KEYS):
        return True
    return obj.get("type") in ("object", "array")


def embedded_schema(text: str, limit: int = 200_000) -> dict[str, Any] | None:
    """The first JSON object in ``text`` that looks like a JSON schema (instructor-style JSON mode)."""
    if len(text) > limit:
        return None
    dec = _decoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if looks_like_schema(obj):
            return dict(obj)
        i = text.find("{", end)
    return None


def _decoder() -> Any:
    import json

    return json.JSONDecoder()
