"""Kitchen tools: convert cooking quantities between units, offline."""

from __future__ import annotations

from agent import ToolError, tool

# Each unit: its kind, its size in the kind's base unit (ml, g) and the names people use.
# Volumes are US customary measures, which recipes online mostly use.
UNITS: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "ml": ("volume", 1.0, ("ml", "milliliter", "milliliters", "millilitre", "millilitres")),
    "l": ("volume", 1000.0, ("l", "liter", "liters", "litre", "litres")),
    "tsp": ("volume", 4.92892, ("tsp", "teaspoon", "teaspoons")),
    "tbsp": ("volume", 14.7868, ("tbsp", "tablespoon", "tablespoons")),
    "cup": ("volume", 236.588, ("cup", "cups")),
    "fl oz": ("volume", 29.5735, ("fl oz", "fluid ounce", "fluid ounces")),
    "g": ("weight", 1.0, ("g", "gram", "grams", "gramme", "grammes")),
    "kg": ("weight", 1000.0, ("kg", "kilo", "kilos", "kilogram", "kilograms")),
    "oz": ("weight", 28.3495, ("oz", "ounce", "ounces")),
    "lb": ("weight", 453.592, ("lb", "lbs", "pound", "pounds")),
    "c": ("temperature", 1.0, ("c", "°c", "celsius", "centigrade", "degrees celsius")),
    "f": ("temperature", 1.0, ("f", "°f", "fahrenheit", "degrees fahrenheit")),
    "gas mark": ("temperature", 1.0, ("gas mark", "gas")),
}
# Grams per millilitre, from common cup weights (e.g. 1 cup of flour is about 120 g).
DENSITY = {
    "flour": 0.51, "sugar": 0.85, "brown sugar": 0.90, "icing sugar": 0.51, "butter": 0.96,
    "water": 1.0, "milk": 1.03, "cream": 1.0, "oil": 0.92, "honey": 1.42, "rice": 0.78,
    "oats": 0.38, "salt": 1.2, "cocoa": 0.36,
}
_ALIASES = {alias: unit for unit, (_, _, names) in UNITS.items() for alias in names}


@tool
def convert_units(amount: float, from_unit: str, to_unit: str, ingredient: str | None = None) -> str:
    """Convert a cooking quantity: volume (ml, l, tsp, tbsp, cup, fl oz), weight (g, kg, oz, lb)
    or oven temperature (C, F, gas mark). Between volume and weight it needs the ingredient.

    Args:
        amount: How much, e.g. 2.5.
        from_unit: The unit it is in, e.g. "cups".
        to_unit: The unit wanted, e.g. "grams".
        ingredient: What is measured, e.g. "flour"; needed between cups and grams.
    """
    source, target = _unit(from_unit), _unit(to_unit)
    kind, target_kind = UNITS[source][0], UNITS[target][0]
    if kind == "temperature" or target_kind == "temperature":
        if kind != target_kind:
            raise ToolError(f"cannot convert {from_unit} to {to_unit}: only temperatures convert to temperatures")
        result = _from_celsius(_to_celsius(amount, source), target)
        return f"{_quantity(amount, source)} is about {_quantity(result, target)}."
    base = amount * UNITS[source][1]
    if kind != target_kind:
        density = _density(ingredient, from_unit, to_unit)
        base = base * density if kind == "volume" else base / density
    result = base / UNITS[target][1]
    of = f" of {ingredient.strip().lower()}" if ingredient else ""
    return f"{_quantity(amount, source)}{of} is about {_quantity(result, target)}."


def _unit(name: str) -> str:
    unit = _ALIASES.get(" ".join(name.lower().replace(".", " ").split()))
    if unit is None:
        raise ToolError(f"unknown unit {name!r}; known: {', '.join(UNITS)}")
    return unit


def _density(ingredient: str | None, from_unit: str, to_unit: str) -> float:
    if not ingredient:
        raise ToolError(f"{from_unit} to {to_unit} depends on the ingredient: say which (e.g. flour)")
    key = ingredient.strip().lower()
    density = DENSITY.get(key) or DENSITY.get(key.rstrip("s"))
    if density is None:
        raise ToolError(f"no weight per cup known for {ingredient!r}; known: {', '.join(DENSITY)}")
    return density


def _to_celsius(value: float, unit: str) -> float:
    if unit == "f":
        return (value - 32) * 5 / 9
    if unit == "gas mark":
        return (250 + 25 * value - 32) * 5 / 9  # gas mark n is 250 + 25n °F
    return value


def _from_celsius(value: float, unit: str) -> float:
    if unit == "f":
        return value * 9 / 5 + 32
    if unit == "gas mark":
        return max(1.0, round(((value * 9 / 5 + 32) - 250) / 25))
    return value


def _number(value: float) -> str:
    """Kitchen precision: 240, 12.5, 0.25."""
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"


def _quantity(value: float, unit: str) -> str:
    """How an amount reads: "2 cups", "240 g", "180 °C", "gas mark 4"."""
    if unit == "gas mark":
        return f"gas mark {_number(value)}"
    if unit in ("c", "f"):
        return f"{_number(value)} °{unit.upper()}"
    return f"{_number(value)} {unit}{'s' if unit == 'cup' and value != 1 else ''}"
