"""Symbolic tensor dimensions.

A `Dim` is an integer polynomial over named symbols (`N`, `T`) and opaque
floor-division atoms (`(H + 1)//2`, kept when a division is not exact).  The
canonical form makes structural equality meaningful: `2*N + N == 3*N`.

Plain ints are used wherever a dimension is known; `Dim` only where a symbol
is involved, and `dim()` collapses a constant `Dim` back to an int.

>>> N = Dim.symbol("N")
>>> str(N * 4 + 4)
'4*N + 4'
>>> (N * 4 + 4) // 4 == N + 1
True
>>> ((N * 4 + 4) // 4).evaluate({"N": 2})
3
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Union

DimLike = Union[int, "Dim"]


@dataclass(frozen=True)
class FloorDiv:
    """An opaque atom `num // den` for divisions that are not exact."""

    num: "Dim"
    den: int

    @cached_property
    def text(self) -> str:
        # cached: canonical ordering sorts by this text, and atoms nest (a stride-2
        # layer divides the previous size), so recomputing it was exponential in depth
        return f"({self.num})//{self.den}"

    @cached_property
    def depth(self) -> int:
        """How many floor divisions are nested in this atom."""
        return 1 + self.num.depth

    def __str__(self) -> str:
        return self.text


Atom = Union[str, FloorDiv]


def _atom_key(a: Atom) -> str:
    return a if isinstance(a, str) else "~" + str(a)


def _mono_str(mono: tuple) -> str:
    return "*".join(a if isinstance(a, str) else str(a) for a in mono)


class Dim:
    """An integer polynomial; immutable and hashable."""

    __slots__ = ("terms", "_hash", "_str")

    def __init__(self, terms: dict[tuple, int]):
        self.terms = {m: c for m, c in terms.items() if c != 0}
        self._hash = hash(frozenset(self.terms.items()))
        self._str = None

    @property
    def depth(self) -> int:
        """How many floor divisions are nested in the deepest atom (0: a polynomial)."""
        return max((a.depth for m in self.terms for a in m if isinstance(a, FloorDiv)), default=0)

    # construction -------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> "Dim":
        return Dim({(name,): 1})

    @staticmethod
    def const(value: int) -> "Dim":
        return Dim({(): int(value)})

    @staticmethod
    def of(x: DimLike) -> "Dim":
        if isinstance(x, Dim):
            return x
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(f"not a dimension: {x!r}")
        return Dim.const(x)

    # queries ------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return all(m == () for m in self.terms)

    @property
    def value(self) -> int:
        if not self.is_const:
            raise ValueError(f"dimension {self} is symbolic")
        return self.terms.get((), 0)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for mono in self.terms:
            for a in mono:
                if isinstance(a, str):
                    out.add(a)
                else:
                    out |= a.num.symbols()
        return out

    def substitute(self, env: dict[str, DimLike]) -> DimLike:
        """Replace the symbols bound in `env`; returns an int when fully known."""
        total: DimLike = 0
        for mono, coeff in self.terms.items():
            term: DimLike = coeff
            for a in mono:
                if isinstance(a, str):
                    term = mul(term, env[a] if a in env else Dim.symbol(a))
                else:
                    term = mul(term, floordiv(as_dim(a.num.substitute(env)), a.den))
            total = add(total, term)
        return dim(total)

    def evaluate(self, env: dict[str, int]) -> int:
        out = self.substitute(env)
        if isinstance(out, Dim):
            raise KeyError(", ".join(sorted(out.symbols())))
        return out

    # arithmetic ---------------------------------------------------------
    def __add__(self, other: DimLike) -> "Dim":
        o = Dim.of(other)
        terms = dict(self.terms)
        for m, c in o.terms.items():
            terms[m] = terms.get(m, 0) + c
        return Dim(terms)

    __radd__ = __add__

    def __neg__(self) -> "Dim":
        return Dim({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: DimLike) -> "Dim":
        return self + (-Dim.of(other))

    def __rsub__(self, other: DimLike) -> "Dim":
        return Dim.of(other) - self

    def __mul__(self, other: DimLike) -> "Dim":
        o = Dim.of(other)
        terms: dict[tuple, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in o.terms.items():
                m = tuple(sorted(m1 + m2, key=_atom_key))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Dim(terms)

    __rmul__ = __mul__

    def __floordiv__(self, other: DimLike) -> "Dim":
        return as_dim(floordiv(self, other))

    def exact_div(self, other: DimLike) -> "Dim | None":
        """`self / other` when it divides exactly, else None."""
        o = Dim.of(other)
        if o.is_const:
            d = o.value
            if d != 0 and all(c % d == 0 for c in self.terms.values()):
                return Dim({m: c // d for m, c in self.terms.items()})
            return None
        if len(o.terms) != 1:
            return None
        ((om, oc),) = o.terms.items()
        terms = {}
        for m, c in self.terms.items():
            rest = list(m)
            for a in om:
                if a not in rest:
                    return None
                rest.remove(a)
            if c % oc:
                return None
            terms[tuple(rest)] = c // oc
        return Dim(terms)

    # comparison ---------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, bool):
            return False
        if isinstance(other, int):
            other = Dim.const(other)
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        if self._str is None:
            self._str = self._text()
        return self._str

    def _text(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for mono in sorted(self.terms, key=lambda m: (-len(m), _mono_str(m))):
            c = self.terms[mono]
            if mono == ():
                body = str(abs(c))
            elif abs(c) == 1:
                body = _mono_str(mono)
            else:
                body = f"{abs(c)}*{_mono_str(mono)}"
            if not parts:
                parts.append(("-" if c < 0 else "") + body)
            else:
                parts.append(("- " if c < 0 else "+ ") + body)
        return " ".join(parts)

    __repr__ = __str__


def as_dim(x: DimLike) -> Dim:
    return Dim.of(x)


def dim(x: DimLike) -> DimLike:
    """Canonical form: an int when the value is known, else a `Dim`."""
    if isinstance(x, Dim) and x.is_const:
        return x.value
    return x


def add(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return dim(as_dim(a) + b)


def sub(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    return dim(as_dim(a) - b)


def mul(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    return dim(as_dim(a) * b)


def floordiv(a: DimLike, b: DimLike) -> DimLike:
    """Floor division; exact divisions stay polynomial, others become atoms."""
    a, b = dim(a), dim(b)
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise ZeroDivisionError("division of a dimension by zero")
        return a // b
    exact = as_dim(a).exact_div(b)
    if exact is not None:
        return dim(exact)
    bd = as_dim(b)
    if not bd.is_const:
        raise ValueError(f"cannot divide {a} by the symbolic {b}")
    if bd.value == 0:
        raise ZeroDivisionError("division of a dimension by zero")
    return dim(_floor_atom(as_dim(a), bd.value))


def _floor_atom(num: Dim, den: int) -> Dim:
    """`num // den` in canonical form, by identities that hold for every integer
    value of the symbols:

    * (d*Q + R) // d == Q + R // d: each coefficient is reduced modulo d, so
      (H - 2)//2 + 1 becomes (H)//2 and a constant remainder below d vanishes;
    * (g*R) // (g*e) == R // e for a common factor g;
    * (X//m + c) // e == (X + c*m) // (m*e): nested floors merge, so a stack of
      strided layers keeps one division, (H + 3)//4 rather than ((H + 1)//2 + 1)//2.
    """
    if den < 0:
        num, den = -num, -den
    quotient: dict[tuple, int] = {}
    rest: dict[tuple, int] = {}
    for mono, c in num.terms.items():
        q, r = divmod(c, den)
        quotient[mono] = q
        rest[mono] = r
    q, r = Dim(quotient), Dim(rest)
    if r.is_const:                       # 0 <= r < den
        return q
    g = math.gcd(den, *r.terms.values())
    if g > 1:
        r, den = Dim({m: c // g for m, c in r.terms.items()}), den // g
    inner = _single_floor(r)
    if inner is not None:
        atom, const = inner
        return q + _floor_atom(atom.num + const * atom.den, atom.den * den)
    return q + Dim({(FloorDiv(r, den),): 1})


def _single_floor(r: Dim):
    """(atom, c) when r is exactly `atom + c` for one floor-division atom, else None."""
    atom, const = None, 0
    for mono, c in r.terms.items():
        if mono == ():
            const = c
        elif len(mono) == 1 and isinstance(mono[0], FloorDiv) and c == 1 and atom is None:
            atom = mono[0]
        else:
            return None
    return None if atom is None else (atom, const)


def prod(dims) -> DimLike:
    out: DimLike = 1
    for d in dims:
        out = mul(out, d)
    return out


def known_equal(a: DimLike, b: DimLike) -> bool | None:
    """True/False when decidable at compile time, None when it depends on symbols."""
    diff = dim(as_dim(a) - b)
    if isinstance(diff, int):
        return diff == 0
    return None


def is_symbolic(x: DimLike) -> bool:
    return isinstance(x, Dim) and not x.is_const
