"""Raw id lookup at serving time: the bundle's ids keep their dtype (int64 for MovieLens or an integer
Parquet column, strings for a CSV table), and queries are matched to them by one documented rule.

- An id of the bundle's own type is looked up as is.
- Integer ids in the bundle: a query string that is a canonical decimal integer (``"196"``, ``"-3"``;
  no ``+``, leading zeros, spaces or decimal point, at most 18 digits) is read as that integer.
- String ids in the bundle: a query integer (Python or numpy, not bool) is read as ``str(id)``.
- Anything else (floats, bools; for integer ids also ``"0196"``, ``" 196"``, ``"+196"``) is never
  converted. If such an id equals a known id after int()/str() conversion, it is refused with
  :class:`UnknownIdError` naming both types, even under ``on_unknown="fallback"``: it is a known id in
  the wrong form, not a new user or item. (Strings are exact ids in a string-id bundle: ``"0196"``
  there is another id than ``"196"``.)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CANONICAL_INT = r"-?(?:0|[1-9][0-9]{0,17})"
# Numeric forms a person may mean as the same id: sign, leading zeros, spaces, a ".0" tail.
_NUMERIC_FORM = r"^\s*\+?(-?)0*([0-9]+?)(?:\.0*)?\s*$"


class UnknownIdError(KeyError):
    """Raw ids that are not in the bundle's id maps (or are in a form that is not converted)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def query_values(raw) -> pd.Index:
    """1-D Index of query ids keeping each id's type (a list mixing ints and strings stays mixed)."""
    if isinstance(raw, (str, bytes)) or np.ndim(raw) == 0:
        raw = [raw]
    if isinstance(raw, np.ndarray):
        return pd.Index(raw.reshape(-1))
    return pd.Index(list(raw))


def _category(value) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return "int"
    return "other"


def _element_types(values: pd.Index) -> np.ndarray:
    """Per query id: "int" (integer, not bool), "str", or "other"."""
    inferred = pd.api.types.infer_dtype(values, skipna=False)
    if inferred in ("integer", "string"):  # homogeneous queries: no per-id work
        return np.full(len(values), "int" if inferred == "integer" else "str", dtype=object)
    return pd.Series(np.asarray(values, dtype=object), dtype=object).map(_category).to_numpy(dtype=object)


def _numeric_keys(values) -> np.ndarray:
    """Each id as text (object array), numeric forms normalized ("0196", " 196", "+196", 196.0 -> "196")."""
    text = pd.Series(np.asarray(values, dtype=object).astype(str), dtype=object)
    return text.str.replace(_NUMERIC_FORM, r"\1\2", regex=True).to_numpy(dtype=object)


class IdLookup:
    """Raw ids of one side of a bundle (users or items) -> indices, by the rule of the module docstring."""

    def __init__(self, ids: pd.Index, kind: str):
        self.ids, self.kind = ids, kind
        inferred = pd.api.types.infer_dtype(ids, skipna=False)
        self.id_type = {"integer": "int", "string": "str"}.get(inferred, "other")
        self.dtype_name = str(ids.dtype) if self.id_type != "str" else "str (strings)"
        self._keys = None  # numeric keys of the bundle's ids, built on the first near-miss check

    def describe(self) -> str:
        return f"the bundle's {self.kind} ids are {self.dtype_name}"

    def indices(self, raw, on_unknown: str = "error", remedy: str = "") -> np.ndarray:
        """(B,) int64 indices of raw ids; -1 for unknown ids when ``on_unknown="fallback"``.

        Raises ValueError for another ``on_unknown``; UnknownIdError naming the ids, their type and the
        bundle's id dtype for unknown ids (with ``on_unknown="error"``) and for ids that match a known
        id only after a conversion that is not done (always). ``remedy``: text added to the message."""
        if on_unknown not in ("error", "fallback"):
            raise ValueError(f"on_unknown must be 'error' or 'fallback', got {on_unknown!r}")
        query = query_values(raw)
        idx = self._lookup(query)
        missing = idx < 0
        if missing.any():
            self._refuse_near_matches(query[missing])
            if on_unknown != "fallback":
                raise UnknownIdError(self._unknown_message(query[missing], remedy))
        return idx

    def _lookup(self, query: pd.Index) -> np.ndarray:
        """Exact lookup of ids of the bundle's type, then the one conversion (str <-> canonical int)."""
        if self.id_type == "other":
            return self.ids.get_indexer(query).astype(np.int64)
        types = _element_types(query)
        same = types == self.id_type
        if same.all():  # the usual case: one exact lookup
            return self.ids.get_indexer(query).astype(np.int64)
        idx = np.full(len(query), -1, dtype=np.int64)
        if same.any():
            idx[same] = self.ids.get_indexer(query[same])
        other = np.flatnonzero(~same & (types != "other"))
        if len(other):
            values = pd.Series(np.asarray(query[other], dtype=object), dtype=object)
            if self.id_type == "int":  # strings: canonical integers only
                ok = values.astype(str).str.fullmatch(CANONICAL_INT).to_numpy(dtype=bool)
                converted = pd.Index(values[ok].astype(str).astype(np.int64).to_numpy())
            else:  # integers -> str
                ok = np.ones(len(other), dtype=bool)
                converted = pd.Index(values.astype(str).to_numpy(dtype=object))
            idx[other[ok]] = self.ids.get_indexer(converted)
        return idx

    def _refuse_near_matches(self, missing: pd.Index) -> None:
        """Raise UnknownIdError if unknown query ids of another type than the bundle's (or strings that
        are not canonical integers, for integer ids) equal known ids after int()/str() conversion."""
        if self.id_type == "other":
            return
        foreign = missing[_element_types(missing) != self.id_type]
        if not len(foreign):
            return
        known_keys, known_ids = self._known_keys()
        keys = _numeric_keys(foreign)
        position = known_keys.get_indexer(pd.Index(keys, dtype=object))
        near = np.flatnonzero(position >= 0)
        if len(near):
            pairs = zip(foreign[near[:5]].tolist(), known_ids[position[near[:5]]].tolist())  # Python scalars
            shown = ", ".join(f"{query!r} ({type(query).__name__}) looks like {known!r}" for query, known in pairs)
            raise UnknownIdError(
                f"{len(near)} {self.kind} id(s) not found in the form given: {shown}; {self.describe()}, and "
                f"{self._conversion_rule()}. Pass the ids as the bundle stores them (on_unknown='fallback' does not "
                f"apply to these: they are known {self.kind}s in another form, not new ones)")

    def _known_keys(self) -> tuple[pd.Index, np.ndarray]:
        """(unique numeric keys, the first raw id of each) of the bundle's ids; built once, on first use."""
        if self._keys is None:
            ids = self.ids.to_numpy(dtype=object)
            keys = ids.astype(str) if self.id_type == "int" else _numeric_keys(ids)  # ints are canonical already
            keys = pd.Index(keys, dtype=object)
            first = ~keys.duplicated()
            self._keys = (keys[first], ids[first])
        return self._keys

    def _conversion_rule(self) -> str:
        if self.id_type == "other":
            return "ids are matched as they are, without conversion"
        if self.id_type == "int":
            return "query strings are converted only when they are canonical integers such as '196'"
        return "query integers are converted with str() (196 -> '196'), other types are not converted"

    def _unknown_message(self, missing: pd.Index, remedy: str) -> str:
        """"N unknown user id(s): [...]", naming the bundle's id dtype when the query's types differ."""
        unknown = pd.Index(list(dict.fromkeys(missing.tolist())), dtype=object)
        hint = ""
        if self.id_type == "other" or (_element_types(unknown) != self.id_type).any():
            names = "/".join(sorted({type(value).__name__ for value in unknown[:1000]}))
            hint = f"; {self.describe()} and the query's are {names}: {self._conversion_rule()}"
        return f"{len(unknown)} unknown {self.kind} id(s): {unknown[:5].tolist()}{f' ({remedy})' if remedy else ''}{hint}"
