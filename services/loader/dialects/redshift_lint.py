"""A lint for SQL meant for Amazon Redshift, which cannot run here (issue 17).

A statement passes when sqlglot's Redshift dialect parses it into a real statement (not an
opaque ``Command``) AND it uses nothing from AWS's published lists of unsupported
PostgreSQL functions, features and data types (``redshift_unsupported.yaml``: the lists as
data, with their source URLs). Functions are found twice -- by sqlglot's parse tree and by
name in the text -- because sqlglot maps some names onto its own nodes (``STRING_AGG`` is
``GroupConcat``); data types and features are regular expressions over the statement's code
with string literals and quoted identifiers blanked, so data and column names never match.

Pure: the caller renders the statements (``psycopg2.sql`` composition) and gets problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from sqlglot import exp

DATA = Path(__file__).with_name("redshift_unsupported.yaml")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# sqlglot keeps these as opaque commands; each is checked by the lists' patterns only
COMMANDS = re.compile(r"^\s*(LOCK|SET\s+query_group\s+TO)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Unsupported:
    sources: dict[str, str]
    functions: dict[str, list[re.Pattern[str]]]  # family -> whole-name patterns
    data_types: dict[str, list[re.Pattern[str]]]
    features: dict[str, list[re.Pattern[str]]]


@cache
def unsupported(path: Path = DATA) -> Unsupported:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())

    def compiled(group: str, whole: bool) -> dict[str, list[re.Pattern[str]]]:
        wrap = (lambda p: rf"(?:{p})\Z") if whole else (lambda p: p)
        return {name: [re.compile(wrap(p), re.IGNORECASE) for p in ps] for name, ps in raw[group].items()}

    return Unsupported(
        raw["sources"],
        compiled("functions", True),
        compiled("data_types", False),
        compiled("features", False),
    )


def code_of(statement: str) -> str:
    """The statement with literals as ``''`` and quoted identifiers as ``"_"``."""
    return _QUOTED.sub('"_"', _LITERAL.sub("''", statement))


def called_functions(statement: str, tree: Any) -> set[str]:
    names = {m.group(1).upper() for m in _CALL.finditer(code_of(statement))}
    if tree is not None:
        for node in tree.find_all(exp.Func):
            names.add((node.name if isinstance(node, exp.Anonymous) else node.sql_name()).upper())
    return names


def problems(statement: str) -> list[str]:
    """Why Redshift would refuse ``statement`` (empty: it passes the lint)."""
    found: list[str] = []
    tree: Any = None
    try:
        tree = sqlglot.parse_one(statement, read="redshift")
    except sqlglot.errors.ParseError as exc:
        found.append(f"sqlglot (redshift) cannot parse it: {str(exc).splitlines()[0]}")
    if isinstance(tree, exp.Command) and not COMMANDS.match(statement):
        found.append("sqlglot (redshift) keeps it as an opaque command: not a statement it knows")
    lists = unsupported()
    for name in sorted(called_functions(statement, tree)):
        for family, patterns in lists.functions.items():
            if any(p.match(name) for p in patterns):
                found.append(f"calls {name}(): {family} are unsupported")
    code = code_of(statement)
    for group, label in ((lists.data_types, "data type"), (lists.features, "feature")):
        for name, patterns in group.items():
            if any(p.search(code) for p in patterns):
                found.append(f"uses the unsupported PostgreSQL {label} {name!r}")
    return found
