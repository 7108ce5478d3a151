"""Label equations: safe, vectorised expressions over metric columns.

AutoBuild trains its predictor on a scalar label that combines several
metrics.  The paper's label equations are written by hand (notes Sec. 4,
paper Sec. 5.1 / 7.2; automating them is the authors' stated open problem).
The paper's examples::

    100**acc                         acc/latency_cpu
    acc - lat                        acc*100/latency_gpu
    100**acc/(np.log10(lat+1)+1)     PQ/log10(flops)
    sqrt(PQ) - sqrt(flops)           sqrt(PQ) - 2*sqrt(flops)

The authors' code substitutes values into the string and calls ``eval``.
Here the text is parsed with :func:`ast.parse` and only a whitelist of AST
nodes is accepted: numbers, metric names, unary ``+``/``-``, binary
``+ - * / ** %``, comparisons, and calls of the numpy functions in
:data:`FUNCTIONS`, written bare (``log10(x)``) or as ``np.log10(x)`` /
``numpy.log10(x)``.  The tree is turned into nested numpy closures; the
string's code is never evaluated.

Every constant is a float (so ``acc ** 9 ** 9 ** 9`` cannot become a huge Python integer), and
the text is bounded: at most :data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting,
constant exponents of magnitude at most :data:`MAX_EXPONENT` and no power towers.  Every failure,
at parse or evaluation time, is reported as the equation's fault; :meth:`LabelEquation.labels`
also refuses results that are constant or not finite where the metrics are.
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_EXPONENT", "MAX_LENGTH", "LabelEquation", "UnknownMetricError"]

MAX_LENGTH = 1000
MAX_DEPTH = 40
MAX_EXPONENT = 100.0

Env = Mapping[str, np.ndarray]
Evaluator = Callable[[Env], Any]

# name -> (numpy function, number of positional arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "abs": (np.abs, 1),
    "absolute": (np.absolute, 1),
    "sqrt": (np.sqrt, 1),
    "cbrt": (np.cbrt, 1),
    "square": (np.square, 1),
    "exp": (np.exp, 1),
    "exp2": (np.exp2, 1),
    "expm1": (np.expm1, 1),
    "log": (np.log, 1),
    "log2": (np.log2, 1),
    "log10": (np.log10, 1),
    "log1p": (np.log1p, 1),
    "tanh": (np.tanh, 1),
    "sinh": (np.sinh, 1),
    "cosh": (np.cosh, 1),
    "arctan": (np.arctan, 1),
    "sign": (np.sign, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
    "round": (np.round, 1),
    "power": (np.power, 2),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "clip": (np.clip, 3),
    "where": (np.where, 3),
}
_MODULE_ALIASES = ("np", "numpy")

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ALLOWED = (
    "numbers, metric names, unary + -, binary + - * / ** %, comparisons "
    "(< <= > >= == !=) and calls of " + ", ".join(sorted(FUNCTIONS))
    + " (bare or as np.<f> / numpy.<f>, positional arguments only)"
)


_KINDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.BoolOp: "and/or",
}


class UnknownMetricError(ValueError):
    """An equation names a metric the table does not have."""


@dataclass(frozen=True)
class LabelEquation:
    """A parsed label equation; call it on a table of metric columns."""

    text: str
    name: str
    metrics: tuple[str, ...]
    _evaluate: Evaluator = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> LabelEquation:
        """Parse and validate ``text``; raise ``ValueError`` saying what is not allowed."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"label equation {text!r} is empty; write e.g. 'acc/latency_gpu'")
        if len(text.strip()) > MAX_LENGTH:
            raise ValueError(f"label equation {_short(text)} is {len(text.strip())} characters long; "
                             f"the limit is {MAX_LENGTH}: write a shorter equation")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            raise ValueError(f"label equation {text!r} is not a valid expression: {err.msg}") from None
        except (RecursionError, MemoryError):
            raise ValueError(f"label equation {text!r} is nested too deeply; the limit is {MAX_DEPTH} levels") from None
        metrics: set[str] = set()
        evaluate = _build(tree.body, text, metrics, 0)
        if not metrics:
            raise ValueError(f"label equation {text!r} uses no metric")
        return cls(text.strip(), name or text.strip(), tuple(sorted(metrics)), evaluate)

    def __call__(self, table: Mapping[str, Any] | Any) -> np.ndarray:
        """Evaluate on a mapping or DataFrame of metric columns, element-wise."""
        available = [str(c) for c in (table.columns if hasattr(table, "columns") else table.keys())]
        missing = [m for m in self.metrics if m not in available]
        if missing:
            raise UnknownMetricError(
                f"label equation {self.text!r} uses unknown metric(s) {missing}; "
                f"available: {sorted(available)}"
            )
        env = {m: np.asarray(table[m], dtype=float) for m in self.metrics}
        try:
            with np.errstate(all="ignore"):
                return np.asarray(self._evaluate(env), dtype=float)
        except (ArithmeticError, ValueError) as exc:
            raise ValueError(f"label equation {self.text!r} cannot be evaluated ({type(exc).__name__}: {exc}); "
                             "rewrite the equation") from None

    def labels(self, table: Mapping[str, Any] | Any, n_rows: int) -> np.ndarray:
        """One finite training label per row, or ``ValueError`` naming whose fault it is:
        NaN/inf in a metric column is the data's, NaN/inf from finite metrics or the same
        value on every row is the equation's."""
        y = np.broadcast_to(self(table), (n_rows,)).copy()
        inputs_ok = np.ones(n_rows, dtype=bool)
        for m in self.metrics:
            inputs_ok &= np.isfinite(np.asarray(table[m], dtype=float))
        bad_data = np.flatnonzero(~inputs_ok)
        if len(bad_data):
            cols = [m for m in self.metrics if not np.isfinite(np.asarray(table[m], dtype=float)).all()]
            raise ValueError(f"metric column(s) {cols} hold NaN/inf in {len(bad_data)} row(s) "
                             f"(first rows {bad_data[:5].tolist()}); drop or fix those rows of the table")
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            first = {m: float(np.asarray(table[m], dtype=float)[bad[0]]) for m in self.metrics}
            raise ValueError(f"label equation {self.text!r} gives NaN/inf on {len(bad)} of {n_rows} rows "
                             f"(e.g. row {int(bad[0])} with {first}); rewrite the equation "
                             "(guard divisions, logs and powers)")
        if n_rows > 1 and np.ptp(y) == 0:
            raise ValueError(f"label equation {self.text!r} gives the same value ({y[0]:g}) on every row; "
                             "a predictor cannot learn a ranking from it: use an equation that varies")
        return y

    def __str__(self) -> str:
        return self.text


def _short(text: str, limit: int = 60) -> str:
    """``repr`` of ``text``, cut to ``limit`` characters for error messages."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _constant_exponent(node: ast.AST) -> float | None:
    """The value of a (signed) numeric constant, else None."""
    sign = 1.0
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        try:
            return sign * float(node.value)
        except OverflowError:
            return float("inf")
    return None


def _refuse(node: ast.AST, text: str, what: str) -> ValueError:
    where = ast.get_source_segment(text.strip(), node) or type(node).__name__
    return ValueError(f"label equation {text!r}: {what} ({where!r}) is not allowed; allowed: {_ALLOWED}")


def _function(node: ast.expr, text: str) -> tuple[str, Callable[..., Any], int]:
    if isinstance(node, ast.Name):
        fname = node.id
    elif (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in _MODULE_ALIASES
    ):
        fname = node.attr
    else:
        raise _refuse(node, text, "calling anything but a listed numpy function")
    if fname not in FUNCTIONS:
        raise _refuse(node, text, f"function {fname!r}")
    return (fname, *FUNCTIONS[fname])


def _build(node: ast.AST, text: str, metrics: set[str], depth: int) -> Evaluator:
    """Validate ``node`` and return a closure computing it from metric arrays."""
    if depth > MAX_DEPTH:
        raise ValueError(f"label equation {_short(text)} is nested more than {MAX_DEPTH} levels deep; simplify it")
    depth += 1
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(node, text, f"constant {node.value!r}")
        try:
            value = float(node.value)
        except OverflowError:
            raise ValueError(f"label equation {_short(text)}: constant {_short(str(node.value), 20)} "
                             "is too large for a float; use a smaller constant") from None
        return lambda env: value
    if isinstance(node, ast.Name):
        ident = node.id
        if ident.startswith("__"):
            raise _refuse(node, text, f"dunder name {ident!r}")
        if ident in FUNCTIONS or ident in _MODULE_ALIASES:
            raise _refuse(node, text, f"{ident!r} used as a value")
        metrics.add(ident)
        return lambda env: env[ident]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op1, operand = _UNARY[type(node.op)], _build(node.operand, text, metrics, depth)
        return lambda env: op1(operand(env))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        if isinstance(node.op, ast.Pow):
            _check_exponent(node, text)
        op2 = _BINARY[type(node.op)]
        left, right = _build(node.left, text, metrics, depth), _build(node.right, text, metrics, depth)
        return lambda env: op2(left(env), right(env))
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise _refuse(node, text, "this comparison operator")
        ops = [_COMPARE[type(op)] for op in node.ops]
        terms = [_build(t, text, metrics, depth) for t in (node.left, *node.comparators)]

        def compare(env: Env) -> Any:
            values = [t(env) for t in terms]
            result = True
            for op, a, b in zip(ops, values, values[1:]):
                result = np.logical_and(result, op(a, b))
            return result

        return compare
    if isinstance(node, ast.Call):
        fname, func, arity = _function(node.func, text)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(node, text, f"keyword or starred arguments to {fname}")
        if len(node.args) != arity:
            raise ValueError(
                f"label equation {text!r}: {fname} takes {arity} argument(s), got {len(node.args)}"
            )
        args = [_build(a, text, metrics, depth) for a in node.args]
        return lambda env: func(*(a(env) for a in args))
    if isinstance(node, (ast.UnaryOp, ast.BinOp)):
        raise _refuse(node, text, f"operator {type(node.op).__name__}")
    raise _refuse(node, text, _KINDS.get(type(node), type(node).__name__))


def _check_exponent(node: ast.BinOp, text: str) -> None:
    """Refuse power towers and constant exponents above :data:`MAX_EXPONENT` in magnitude."""
    exponent = node.right
    while isinstance(exponent, ast.UnaryOp):
        exponent = exponent.operand
    if isinstance(exponent, ast.BinOp) and isinstance(exponent.op, ast.Pow):
        raise ValueError(f"label equation {_short(text)}: a power of a power ('a ** b ** c') is not allowed; "
                         "use parentheses, e.g. '(a ** b) ** c', with small exponents")
    value = _constant_exponent(node.right)
    if value is not None and not abs(value) <= MAX_EXPONENT:
        raise ValueError(f"label equation {_short(text)}: exponent {value:g} is larger than {MAX_EXPONENT:g} "
                         "in magnitude; use a smaller exponent")
