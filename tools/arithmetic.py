"""Arithmetic tool: exact calculation with fractions, parsed with `ast` (never eval)."""

from __future__ import annotations

import ast
import math
import operator
import re
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Callable

from agent.tools import ToolError, tool

# Exact rationals, or floats once something irrational (sqrt(2), pi) comes in.
Number = Fraction | float

MAX_LENGTH = 200
MAX_BITS = 8_000  # about 2,400 digits: beyond this a number is no use to anyone listening
MAX_EXACT_DIGITS = 40  # longer results are also shown rounded
MAX_DECIMALS = 20  # 1/1024 prints as 0.0009765625, 1/2**40 as a fraction
ALLOWED = "use numbers, + - * / // % ** ( ), sqrt(x), round(x, digits), abs(x) and pi"

_CONSTANTS = {"pi": math.pi, "π": math.pi, "e": math.e}
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "−": "-", "^": "**"})  # nobody means XOR
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PERCENT_OF = re.compile(_NUMBER + r"\s*%\s*of\b", re.IGNORECASE)  # "15% of 80"
# "15%" written against its number and not followed by an operand; "10 % 3" stays modulo.
_PERCENT = re.compile(_NUMBER + r"%(?!\s*[\w.(])")
_PERCENT_CALL = "_percent"  # what both become, so the evaluator can see a percentage


@tool
def calculate(expression: str) -> str:
    """Calculate arithmetic exactly. Use it for any sum, price, percentage or unit count.

    Args:
        expression: The math to do, e.g. "12.5 * 4 - 3", "2 ** 10", "15% of 80", "sqrt(2)",
            "round(10 / 3, 2)".
    """
    text = " ".join(expression.split())
    if not text:
        raise ToolError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ToolError(f"the expression is too long ({len(text)} characters, at most {MAX_LENGTH})")
    return f"{text} {describe(evaluate(text))}"


def evaluate(text: str) -> Number:
    """The value of an arithmetic expression; ToolError if it is not plain arithmetic."""
    source = text.translate(_SYMBOLS)
    source = _PERCENT_OF.sub(rf"{_PERCENT_CALL}(\1)*", source)
    source = _PERCENT.sub(rf"{_PERCENT_CALL}(\1)", source)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"cannot read {text!r} as arithmetic; {ALLOWED}") from None
    return _Evaluator(source).value(tree.body)


class _Evaluator:
    """Walks the syntax tree, allowing only the nodes arithmetic needs."""

    def __init__(self, source: str):
        self.source = source

    def value(self, node: ast.expr) -> Number:
        match node:
            case ast.Constant(value=bool() | str() | bytes() | complex() | None):
                raise self.refuse(node, "is not a number")
            case ast.Constant(value=int() as whole):
                return Fraction(whole)
            case ast.Constant(value=float()):
                return self.decimal(node)
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -self.value(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return self.value(operand)
            case ast.BinOp(left=left, op=ast.Add() | ast.Sub() as op, right=right) if _is_percent(right):
                # "80 + 15%" is 80 plus 15% of 80, as on any calculator.
                base = self.value(left)
                return _apply(op, base, _apply(ast.Mult(), base, self.value(right)))
            case ast.BinOp(left=left, op=op, right=right) if type(op) in _OPERATORS:
                return _apply(op, self.value(left), self.value(right))
            case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
                return self.call(name, args)
            case ast.Name(id=name) if name in _CONSTANTS:
                return _CONSTANTS[name]
            case ast.Name():
                raise self.refuse(node, "is not a known number")
            case _:
                raise self.refuse(node, "is not allowed")

    def call(self, name: str, args: list[ast.expr]) -> Number:
        low, high = _ARITY[name]
        if not low <= len(args) <= high:
            wanted = f"{low}" if low == high else f"{low} or {high}"
            raise ToolError(f"{name}() takes {wanted} number{'s' if high > 1 else ''}, got {len(args)}")
        try:
            return _checked(_FUNCTIONS[name](*(self.value(a) for a in args)))
        except OverflowError:
            raise ToolError("the result is too large") from None

    def decimal(self, node: ast.Constant) -> Fraction:
        """A decimal literal exactly as written (0.1 is 1/10, not the nearest binary float)."""
        written = ast.get_source_segment(self.source, node) or repr(node.value)
        try:
            number = Decimal(written)
        except InvalidOperation:
            raise self.refuse(node, "is not a number") from None
        if abs(number.adjusted()) > MAX_BITS // 4:
            raise ToolError(f"{written} is too large to calculate with")
        return Fraction(number)

    def refuse(self, node: ast.AST, why: str) -> ToolError:
        written = ast.get_source_segment(self.source, node) or type(node).__name__
        return ToolError(f"{written!r} {why} in a calculation; {ALLOWED}")


def _is_percent(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == _PERCENT_CALL


def _apply(op: ast.operator, left: Number, right: Number) -> Number:
    try:
        return _checked(_OPERATORS[type(op)](left, right))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        whole = exponent.numerator
        if isinstance(base, Fraction) and abs(base) != 1 and base != 0:
            # Refuse before computing: 9 ** 9 ** 9 would otherwise run for minutes.
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if (size - 1) * abs(whole) > MAX_BITS:
                raise ToolError("the result is too large to calculate exactly")
        return base**whole
    if base < 0:
        raise ToolError("a negative number to a fractional power has no real result")
    if isinstance(base, Fraction) and isinstance(exponent, Fraction):
        root = _exact_root(base, exponent.denominator)
        if root is not None:
            return _power(root, Fraction(exponent.numerator))
    return float(base) ** float(exponent)


def _exact_root(x: Fraction, degree: int) -> Fraction | None:
    """The degree-th root of x if it is rational (sqrt(9/4) = 3/2), else None."""
    parts = []
    for whole in (x.numerator, x.denominator):
        try:
            root = math.isqrt(whole) if degree == 2 else round(whole ** (1 / degree))
        except OverflowError:
            return None
        if root**degree != whole:
            return None
        parts.append(root)
    return Fraction(*parts)


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise ToolError("sqrt of a negative number has no real result")
    exact = _exact_root(x, 2) if isinstance(x, Fraction) else None
    return exact if exact is not None else math.sqrt(x)


def _round(x: Number, digits: Number = Fraction(0)) -> Fraction:
    """Round half away from zero, as people do (round(2.5) is 3, not Python's 2)."""
    if not (isinstance(digits, Fraction) and digits.denominator == 1 and abs(digits) <= MAX_DECIMALS):
        raise ToolError(f"round's digits must be a whole number from -{MAX_DECIMALS} to {MAX_DECIMALS}")
    scale = Fraction(10) ** digits.numerator
    rounded = math.floor(abs(Fraction(x)) * scale + Fraction(1, 2)) / scale
    return rounded if x >= 0 else -rounded


_OPERATORS: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _sqrt,
    "round": _round,
    "abs": abs,
    _PERCENT_CALL: lambda x: x / 100,
}
_ARITY = {"sqrt": (1, 1), "round": (1, 2), "abs": (1, 1), _PERCENT_CALL: (1, 1)}


def _checked(value: Number) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError("the result is too large")
    elif max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise ToolError("the numbers get too large to calculate exactly")
    return value


def describe(value: Number) -> str:
    """'= 0.3', '= 1/3 (≈ 0.333333)' or '≈ 1.414214': exact where the value is."""
    if isinstance(value, float):
        return f"≈ {_rounded(value)}"
    places = _decimal_places(value.denominator)
    if places is not None and places <= MAX_DECIMALS:
        # Built from text, which is exact; Decimal arithmetic would round to 28 digits.
        exact = Decimal(f"{value.numerator * 10**places // value.denominator}E-{places}")
        if len(exact.as_tuple().digits) <= MAX_EXACT_DIGITS:
            return f"= {exact:f}"
    elif max(len(str(value.numerator)), len(str(value.denominator))) <= MAX_EXACT_DIGITS:
        return f"= {value} (≈ {_rounded(value)})"
    return f"≈ {_rounded(value)}"


def _decimal_places(denominator: int) -> int | None:
    """How many decimals 1/denominator needs, or None if they never end (1/3)."""
    twos = (denominator & -denominator).bit_length() - 1
    rest, fives = denominator >> twos, 0
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    return max(twos, fives) if rest == 1 else None


def _rounded(value: Number) -> str:
    """About six decimals for everyday sizes, scientific notation for the very large or small."""
    with localcontext() as context:
        context.prec = 50
        if isinstance(value, float):
            number = Decimal(value)
        else:
            number = Decimal(value.numerator) / Decimal(value.denominator)
        size = abs(number)
        if size == 0:
            return "0"
        if Decimal("1e-6") <= size < Decimal("1e15"):
            # six decimals, or six significant digits for small numbers (0.000142857)
            places = min(-6, size.adjusted() - 5)
            text = f"{number.quantize(Decimal(10) ** places):f}"
            return text.rstrip("0").rstrip(".") if "." in text else text
        mantissa, _, exponent = f"{+number:.6e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
