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
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "LabelEquation", "UnknownMetricError"]

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
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            raise ValueError(f"label equation {text!r} is not a valid expression: {err.msg}") from None
        metrics: set[str] = set()
        evaluate = _build(tree.body, text, metrics)
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
        return np.asarray(self._evaluate(env), dtype=float)

    def __str__(self) -> str:
        return self.text


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


def _build(node: ast.AST, text: str, metrics: set[str]) -> Evaluator:
    """Validate ``node`` and return a closure computing it from metric arrays."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(node, text, f"constant {value!r}")
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
        op1, operand = _UNARY[type(node.op)], _build(node.operand, text, metrics)
        return lambda env: op1(operand(env))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op2 = _BINARY[type(node.op)]
        left, right = _build(node.left, text, metrics), _build(node.right, text, metrics)
        return lambda env: op2(left(env), right(env))
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise _refuse(node, text, "this comparison operator")
        ops = [_COMPARE[type(op)] for op in node.ops]
        terms = [_build(t, text, metrics) for t in (node.left, *node.comparators)]

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
        args = [_build(a, text, metrics) for a in node.args]
        return lambda env: func(*(a(env) for a in args))
    if isinstance(node, (ast.UnaryOp, ast.BinOp)):
        raise _refuse(node, text, f"operator {type(node.op).__name__}")
    raise _refuse(node, text, _KINDS.get(type(node), type(node).__name__))
