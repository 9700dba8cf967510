"""Unit words after a number -> canonical unit (what a quantity token "3.5@in" is made of).

English (Home Depot style: in., ft., gal., oz., amp, volt, gauge) and Indonesian marketplace spellings (inchi, gr,
ltr, pcs, lembar). A unit only counts right after a number, so "in" the preposition is never a quantity.
"""

from __future__ import annotations

_GROUPS: dict[str, tuple[str, ...]] = {
    "in": ("in", "inch", "inches", "inchi"),
    "ft": ("ft", "feet", "foot"),
    "yd": ("yd", "yard", "yards"),
    "mm": ("mm",),
    "cm": ("cm",),
    "m": ("m", "meter", "meters", "metre", "metres"),
    "sqft": ("sqft", "sqfeet", "sqfoot"),
    "sqin": ("sqin", "sqinch", "sqinches"),
    "sqm": ("sqm",),
    "cuft": ("cuft", "cufeet", "cufoot"),
    "gal": ("gal", "gallon", "gallons"),
    "qt": ("qt", "quart", "quarts"),
    "oz": ("oz", "ounce", "ounces", "floz"),
    "lb": ("lb", "lbs", "pound", "pounds"),
    "kg": ("kg", "kilo", "kilogram", "kilograms"),
    "g": ("g", "gr", "gram", "grams", "gsm"),
    "mg": ("mg",),
    "ml": ("ml", "mililiter", "milliliter"),
    "l": ("l", "ltr", "liter", "litre", "liters", "litres"),
    "v": ("v", "volt", "volts", "vac", "vdc"),
    "w": ("w", "watt", "watts"),
    "kw": ("kw",),
    "a": ("a", "amp", "amps", "ampere"),
    "mah": ("mah",),
    "hz": ("hz",),
    "btu": ("btu",),
    "psi": ("psi",),
    "gauge": ("gauge", "ga", "awg"),
    "mb": ("mb",),
    "gb": ("gb",),
    "tb": ("tb",),
    "pack": ("pack", "pk", "pcs", "pc", "piece", "pieces", "count", "ct", "pkg"),
    "sheet": ("sheet", "sheets", "lembar"),
    "deg": ("deg", "degree", "degrees"),
    "light": ("light", "lights"),
    "tier": ("tier",),
}
UNITS: dict[str, str] = {word: unit for unit, words in _GROUPS.items() for word in words}
