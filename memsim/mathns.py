"""The math namespace: the one vocabulary in which model equations are written.

A model family writes its equations once, as Python functions of a namespace ``m``
(``m.exp``, ``m.where``, ...) and of its inputs. Two namespaces implement that
vocabulary:

* :data:`TORCH` evaluates the equations on tensors (batched, differentiable);
* :class:`SpiceMath` builds :class:`Expr` trees that render to ngspice
  B-source expression text.

Because both forms come from the same function, no equation is typed twice.
Equations must not branch with Python ``if`` on a quantity (that cannot become a
SPICE expression); they use :meth:`where` instead. :class:`Expr` refuses ``bool()``
so such a mistake fails loudly when the SPICE form is rendered.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


# ----------------------------------------------------------------------------
# SPICE side: expression trees
# ----------------------------------------------------------------------------

def _fmt(value) -> str:
    """Render a Python number exactly (repr round-trips a float)."""
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"cannot render non-finite constant {value!r} into SPICE")
        text = repr(float(value))
        return f"({text})" if value < 0 else text
    raise TypeError(f"cannot render {type(value).__name__} into a SPICE expression")


class Expr:
    """A node of a SPICE behavioural expression. Operators build new nodes."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Expr({self.text})"

    def __str__(self) -> str:
        return self.text

    def __bool__(self):
        raise TypeError(
            "a model equation used a Python 'if'/'and'/'or' on a circuit quantity; "
            "write m.where(cond, a, b) / m.logical_and(a, b) instead so it can be rendered to SPICE"
        )

    @staticmethod
    def _bin(a, op, b) -> "Expr":
        return Expr(f"({_fmt(a)} {op} {_fmt(b)})")

    def __add__(self, o): return Expr._bin(self, "+", o)
    def __radd__(self, o): return Expr._bin(o, "+", self)
    def __sub__(self, o): return Expr._bin(self, "-", o)
    def __rsub__(self, o): return Expr._bin(o, "-", self)
    def __mul__(self, o): return Expr._bin(self, "*", o)
    def __rmul__(self, o): return Expr._bin(o, "*", self)
    def __truediv__(self, o): return Expr._bin(self, "/", o)
    def __rtruediv__(self, o): return Expr._bin(o, "/", self)
    def __neg__(self): return Expr(f"(-{self.text})")
    def __pos__(self): return self
    def __gt__(self, o): return Expr._bin(self, ">", o)
    def __ge__(self, o): return Expr._bin(self, ">=", o)
    def __lt__(self, o): return Expr._bin(self, "<", o)
    def __le__(self, o): return Expr._bin(self, "<=", o)

    def __pow__(self, o):
        raise TypeError("use m.pow(base, exponent) (base must be positive) instead of ** in model equations")

    __rpow__ = __pow__


def _call(name: str, *args) -> Expr:
    return Expr(f"{name}(" + ", ".join(_fmt(a) for a in args) + ")")


class SpiceMath:
    """Renders equations to ngspice B-source syntax.

    ``let(name, expr)`` materialises a shared sub-expression as an auxiliary
    node driven by a voltage B-source (the rendered netlist gets one line per
    binding) and returns ``V(name)``, so a long expression is written once in the
    netlist rather than repeated inline.
    """

    def __init__(self):
        self.bindings: list[tuple[str, Expr]] = []

    # variables -------------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> Expr:
        return Expr(name)

    @staticmethod
    def node(name: str) -> Expr:
        return Expr(f"V({name})")

    @staticmethod
    def branch(a: str, b: str) -> Expr:
        return Expr(f"V({a},{b})")

    def let(self, name: str, value) -> Expr:
        self.bindings.append((name, value if isinstance(value, Expr) else Expr(_fmt(value))))
        return Expr(f"V({name})")

    # functions -------------------------------------------------------------
    @staticmethod
    def exp(a): return _call("exp", a)
    @staticmethod
    def log(a): return _call("ln", a)
    @staticmethod
    def sqrt(a): return _call("sqrt", a)
    @staticmethod
    def sinh(a): return _call("sinh", a)
    @staticmethod
    def cosh(a): return _call("cosh", a)
    @staticmethod
    def tanh(a): return _call("tanh", a)
    @staticmethod
    def abs(a): return _call("abs", a)
    @staticmethod
    def maximum(a, b): return _call("max", a, b)
    @staticmethod
    def minimum(a, b): return _call("min", a, b)

    @staticmethod
    def pow(base, exponent):
        # ngspice's pow() takes the real part for negative bases; equations only
        # call it with positive bases (e.g. pow(abs(u), 2p)), as the docs require.
        return _call("pow", base, exponent)

    @staticmethod
    def sigmoid(a):
        # 1/(1+exp(-a)) overflows in exp for large |a|; the tanh form is exact and bounded.
        return Expr(f"(0.5 * (1 + tanh(0.5 * {_fmt(a)})))")

    @staticmethod
    def where(cond, a, b):
        return Expr(f"(({_fmt(cond)}) ? ({_fmt(a)}) : ({_fmt(b)}))")

    @staticmethod
    def logical_and(a, b): return Expr._bin(a, "&&", b)
    @staticmethod
    def logical_or(a, b): return Expr._bin(a, "||", b)

    def clip(self, a, lo, hi):
        return self.minimum(self.maximum(a, lo), hi)

    @staticmethod
    def stop_gradient(a):
        return a  # values only: SPICE has no gradients


# ----------------------------------------------------------------------------
# torch side
# ----------------------------------------------------------------------------

def _t(a, dtype: torch.dtype | None = None):
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=dtype or torch.get_default_dtype())


def _number(a) -> bool:
    """A plain Python number (a parameter shared by all devices), evaluated in double precision."""
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _pair(a, b, dtype: torch.dtype | None):
    """Two operands as tensors; a number takes its partner's floating dtype (else ``dtype``), never float32
    by default, so a float64 model is not rounded and a float32 model is not upcast."""
    like = next((t.dtype for t in (a, b) if isinstance(t, torch.Tensor) and t.is_floating_point()), dtype)
    return _t(a, like), _t(b, like)


#: integer exponents up to this value are evaluated by repeated squaring: the same value, several times
#: faster than the general pow kernel, with exact gradients through the products
MAX_SQUARING_EXPONENT = 64


def _sigmoid_number(a: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * a))


def _unary(tensor_fn, number_fn):
    # Numbers stay numbers: a coefficient made only of shared parameters is computed in double precision
    # by the math module, once, instead of as 0-dim tensors at every step.
    return lambda self, a: number_fn(a) if _number(a) else tensor_fn(_t(a, self.dtype))


def _binary(tensor_fn, number_fn):
    def op(self, a, b):
        if _number(a) and _number(b):
            return number_fn(a, b)
        return tensor_fn(*_pair(a, b, self.dtype))
    return op


class TorchMath:
    """Evaluates equations on tensors, and on plain numbers (shared parameters). Every function is differentiable.

    ``dtype`` is the dtype given to numbers that must become tensors on their own (both branches of a
    ``where``); ``None`` means torch's default dtype. Numbers next to a tensor take that tensor's dtype.
    """

    def __init__(self, dtype: torch.dtype | None = None):
        self.dtype = dtype

    @staticmethod
    def let(name: str, value):
        return value

    exp = _unary(torch.exp, math.exp)
    log = _unary(torch.log, math.log)
    sqrt = _unary(torch.sqrt, math.sqrt)
    sinh = _unary(torch.sinh, math.sinh)
    cosh = _unary(torch.cosh, math.cosh)
    tanh = _unary(torch.tanh, math.tanh)
    abs = _unary(torch.abs, abs)
    sigmoid = _unary(torch.sigmoid, _sigmoid_number)
    maximum = _binary(torch.maximum, max)
    minimum = _binary(torch.minimum, min)

    def pow(self, base, exponent):
        if _number(base) and _number(exponent):
            return math.pow(base, exponent)
        if _number(exponent) and float(exponent).is_integer() and 1 <= exponent <= MAX_SQUARING_EXPONENT:
            n, result, square = int(exponent), None, _t(base, self.dtype)
            while n:
                if n & 1:
                    result = square if result is None else result * square
                n >>= 1
                if n:
                    square = square * square
            return result
        return torch.pow(*_pair(base, exponent, self.dtype))

    def logical_and(self, a, b):
        return torch.logical_and(_t(a), _t(b))

    def logical_or(self, a, b):
        return torch.logical_or(_t(a), _t(b))

    def where(self, cond, a, b):
        a, b = _pair(a, b, self.dtype)
        if a.dtype != b.dtype:  # e.g. a 0-dim float64 parameter beside a float32 model tensor: keep the model's
            dtype = a.dtype if a.is_floating_point() and a.dim() > 0 else b.dtype
            a, b = a.to(dtype), b.to(dtype)
        return torch.where(_t(cond), a, b)

    @staticmethod
    def clip(a, lo, hi):
        if _number(a):
            return min(max(a, lo), hi)
        return torch.clamp(_t(a), min=lo, max=hi)

    @staticmethod
    def stop_gradient(a):
        """Same value, no gradient through it (used for constraint gates, not for physics)."""
        return a if _number(a) else _t(a).detach()


TORCH = TorchMath()

Equation = Callable[..., object]


# ----------------------------------------------------------------------------
# scalar side: Python source over floats
# ----------------------------------------------------------------------------

#: the functions rendered Python source calls, bound as fast locals of the generated function
PY_FUNCTIONS = {"_exp": math.exp, "_log": math.log, "_sqrt": math.sqrt, "_sinh": math.sinh, "_cosh": math.cosh,
                "_tanh": math.tanh, "_pow": math.pow}


def _is_name(e) -> bool:
    return isinstance(e, Expr) and e.text.isidentifier()


class PyMath:
    """Renders equations to straight-line Python source over floats: a third rendering of the same
    equations, for one device or one neuron at a time (:mod:`memsim.scalar`), where per-call tensor
    overhead would dominate.

    Numbers fold at render time (parameters are constants of the generated code); every ``let`` and every
    operand that a rendered expression uses twice becomes an assignment in :attr:`lines`; ``where`` renders
    to Python's conditional expression, so only the chosen branch is evaluated. Variables are
    :class:`Expr` symbols named by the caller (``m.symbol("v")``).
    """

    def __init__(self, prefix: str = "t"):
        self.lines: list[str] = []
        self.prefix = prefix
        self._count = 0

    def _bind(self, hint: str, value: Expr) -> Expr:
        self._count += 1
        name = f"{self.prefix}_{hint}{self._count}"
        self.lines.append(f"{name} = {value.text}")
        return Expr(name)

    def _simple(self, value):
        """``value`` as a number or a bare name (an expression used twice is computed once)."""
        return value if _number(value) or _is_name(value) else self._bind("u", value)

    @staticmethod
    def symbol(name: str) -> Expr:
        return Expr(name)

    def let(self, name: str, value):
        return value if _number(value) or _is_name(value) else self._bind(name, value)

    @staticmethod
    def _fn(name: str, number_fn):
        def f(self, a):
            return number_fn(a) if _number(a) else Expr(f"{name}({_fmt(a)})")
        return f

    exp = _fn("_exp", math.exp)
    log = _fn("_log", math.log)
    sqrt = _fn("_sqrt", math.sqrt)
    sinh = _fn("_sinh", math.sinh)
    cosh = _fn("_cosh", math.cosh)
    tanh = _fn("_tanh", math.tanh)
    abs = _fn("abs", abs)

    def sigmoid(self, a):
        if _number(a):
            return _sigmoid_number(a)
        return Expr(f"(0.5 * (1.0 + _tanh(0.5 * {_fmt(a)})))")

    def pow(self, base, exponent):
        if _number(base) and _number(exponent):
            return math.pow(base, exponent)
        if _number(exponent) and exponent in (1.0, 2.0, 4.0):  # exact products, as TorchMath's squaring
            result = base
            for _ in range({1.0: 0, 2.0: 1, 4.0: 2}[exponent]):
                result = self._simple(result)
                result = Expr(f"({_fmt(result)} * {_fmt(result)})")
            return result
        return Expr(f"_pow({_fmt(base)}, {_fmt(exponent)})")

    def maximum(self, a, b):
        if _number(a) and _number(b):
            return max(a, b)
        a, b = self._simple(a), self._simple(b)
        return Expr(f"({_fmt(a)} if {_fmt(a)} >= {_fmt(b)} else {_fmt(b)})")

    def minimum(self, a, b):
        if _number(a) and _number(b):
            return min(a, b)
        a, b = self._simple(a), self._simple(b)
        return Expr(f"({_fmt(a)} if {_fmt(a)} <= {_fmt(b)} else {_fmt(b)})")

    def clip(self, a, lo, hi):
        return self.minimum(self.maximum(a, lo), hi)

    def where(self, cond, a, b):
        if isinstance(cond, bool):
            return a if cond else b
        return Expr(f"({_fmt(a)} if {_fmt(cond)} else {_fmt(b)})")

    @staticmethod
    def logical_and(a, b): return Expr(f"({_fmt(a)} and {_fmt(b)})")
    @staticmethod
    def logical_or(a, b): return Expr(f"({_fmt(a)} or {_fmt(b)})")

    @staticmethod
    def stop_gradient(a):
        return a  # values only
