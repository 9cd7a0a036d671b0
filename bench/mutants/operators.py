"""Mutation operators over Python's `ast`: each mutant is one small change to one node.

A mutant replaces one node's source segment (by its line/column span) with the mutated node's
`ast.unparse`, so the rest of the file is byte-for-byte the original and line numbers hold.
Operators: comparison swaps (`<` ⇄ `<=`, `==` ⇄ `!=`, `in` ⇄ `not in`, ...), `and` ⇄ `or`,
`not x` → `x`, an `if`/`while` condition negated, `+` ⇄ `-` and `*` ⇄ `/`, numbers ×10 and
÷10, `True` ⇄ `False`, strings and bytes emptied (each literal part of an f-string too), a call,
`return`, `raise` or `del` statement deleted, the first two positional arguments of a call
swapped (unless they commute, as in `hmac.compare_digest`).

Not mutated, because they are wording or typing rather than behaviour: docstrings, annotations,
the message of a `raise`, and logging calls (`log.…(…)`).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
}
_Node = ast.expr | ast.stmt  # what a mutant replaces
_Value = str | bytes | bool | int | float
_LOGGERS = frozenset({"log", "logger", "logging"})
# Calls whose first two arguments commute: swapping them is no mutant.
_SYMMETRIC = frozenset({"compare_digest", "_equal", "max", "min", "isclose"})


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the project root
    scope: str  # qualified name of the enclosing function/class/assignment, or "<module>"
    line: int
    start: tuple[int, int]  # (line, column) of the replaced span, 1-based lines
    end: tuple[int, int]
    original: str
    replacement: str
    context: str  # the source line the change starts on, stripped
    occurrence: int = 1  # the n-th mutant with this key's other parts in the file

    @property
    def key(self) -> str:
        """Stable across edits elsewhere in the file: no line number in it, but the line's
        text and the column, so two equal changes elsewhere differ."""
        change = f"{_one_line(self.original)} -> {self.replacement}"
        key = f"{self.path}:{self.scope}: `{self.context}`@{self.start[1]}: {change}"
        return key if self.occurrence == 1 else f"{key} #{self.occurrence}"

    def describe(self) -> str:
        return f"{self.path}:{self.line} ({self.scope}): `{_short(self.original)}` → " + (
            f"`{_short(self.replacement)}`"
        )

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for text in lines:
            offsets.append(offsets[-1] + len(text.encode()))
        data = source.encode()
        begin = offsets[self.start[0] - 1] + self.start[1]
        finish = offsets[self.end[0] - 1] + self.end[1]
        return (data[:begin] + self.replacement.encode() + data[finish:]).decode()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str, limit: int = 70) -> str:
    flat = _one_line(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def mutants(source: str, path: str, in_scope: Callable[[str], bool]) -> list[Mutant]:
    """Every mutant of `source` whose enclosing scope `in_scope` accepts, each compiling and
    each different from the original program and from one another."""
    tree = ast.parse(source)
    original = ast.dump(tree)
    segments = source.encode()
    seen: set[str] = set()
    found: list[Mutant] = []
    lines = source.splitlines()
    for scope, node, new_text in _Walker().walk(tree):
        if not in_scope(scope):
            continue
        start = (node.lineno, node.col_offset)
        end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
        old_text = _segment(segments, start, end)
        context = lines[node.lineno - 1].strip()
        mutant = Mutant(path, scope, node.lineno, start, end, old_text, new_text, context)
        text = mutant.apply(source)
        if text in seen:
            continue
        try:
            mutated = ast.parse(text)
            compile(mutated, path, "exec")
        except SyntaxError:
            continue
        if ast.dump(mutated) == original:
            continue
        seen.add(text)
        count = sum(1 for m in found if m.key == mutant.key)
        found.append(dataclasses.replace(mutant, occurrence=count + 1) if count else mutant)
    return found


def _segment(data: bytes, start: tuple[int, int], end: tuple[int, int]) -> str:
    lines = data.splitlines(keepends=True)
    if start[0] == end[0]:
        return lines[start[0] - 1][start[1] : end[1]].decode()
    parts = [lines[start[0] - 1][start[1] :], *lines[start[0] : end[0] - 1]]
    parts.append(lines[end[0] - 1][: end[1]])
    return b"".join(parts).decode()


def _paren(node: ast.AST) -> str:
    return f"({ast.unparse(node)})"


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    return isinstance(owner, ast.Name) and owner.id in _LOGGERS


def _symmetric(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in _SYMMETRIC


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _negation_elsewhere(test: ast.expr) -> bool:
    """A condition whose negation another operator already makes: `not x` (dropping the
    `not`) and a single comparison (its swap to the opposite operator)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return True
    return isinstance(test, ast.Compare) and len(test.ops) == 1


class _Walker:
    """Yields (scope, node, replacement text) for every mutation point."""

    def walk(self, tree: ast.Module) -> Iterator[tuple[str, _Node, str]]:
        yield from self._body(tree.body, [])

    def _body(self, body: list[ast.stmt], scope: list[str]) -> Iterator[tuple[str, _Node, str]]:
        for index, stmt in enumerate(body):
            if index == 0 and _is_docstring(stmt):
                continue
            yield from self._stmt(stmt, scope)

    def _stmt(self, stmt: ast.stmt, scope: list[str]) -> Iterator[tuple[str, _Node, str]]:
        name = ".".join(scope) or "<module>"
        if isinstance(stmt, ast.ClassDef):
            yield from self._body(stmt.body, [*scope, stmt.name])
            return
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [*scope, stmt.name]
            defaults = [*stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d)]
            for default in defaults:
                yield from self._expr(default, ".".join(inner))
            yield from self._body(stmt.body, inner)
            return
        if not scope and isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            name = names[0] if names else name
        if isinstance(stmt, ast.Raise):
            yield name, stmt, "pass"
            return  # the exception and its message: wording, not behaviour
        if isinstance(stmt, ast.Expr) and _is_log_call(stmt.value):
            return
        yield from self._deletion(stmt, name)
        if isinstance(stmt, ast.If | ast.While) and not _negation_elsewhere(stmt.test):
            yield name, stmt.test, f"not {_paren(stmt.test)}"
        for field, value in ast.iter_fields(stmt):
            if field == "annotation":
                continue
            if isinstance(value, ast.expr):
                yield from self._expr(value, name)
            elif isinstance(value, list):
                if value and all(isinstance(v, ast.stmt) for v in value):
                    for child in value:
                        yield from self._stmt(child, scope)
                else:
                    for item in value:
                        if isinstance(item, ast.expr):
                            yield from self._expr(item, name)
                        elif isinstance(item, ast.AST):
                            yield from self._nested(item, scope, name)
            elif isinstance(value, ast.AST):
                yield from self._nested(value, scope, name)

    def _nested(
        self, node: ast.AST, scope: list[str], name: str
    ) -> Iterator[tuple[str, _Node, str]]:
        """withitem, excepthandler, match_case and the like: their expressions and bodies."""
        for _, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                yield from self._expr(value, name)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.stmt):
                        yield from self._stmt(item, scope)
                    elif isinstance(item, ast.expr):
                        yield from self._expr(item, name)

    def _deletion(self, stmt: ast.stmt, name: str) -> Iterator[tuple[str, _Node, str]]:
        called = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call | ast.Await)
        if called or isinstance(stmt, ast.Return | ast.Delete):
            yield name, stmt, "pass"

    def _expr(self, node: ast.expr, name: str) -> Iterator[tuple[str, _Node, str]]:
        if isinstance(node, ast.Lambda):
            yield from self._expr(node.body, name)
            return
        yield from ((name, node, text) for text in _expression_mutants(node))
        if isinstance(node, ast.JoinedStr):
            return  # its parts were handled as a whole
        if isinstance(node, ast.Call) and _is_log_call(node):
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                yield from self._expr(child, name)
            elif isinstance(child, ast.keyword):
                yield from self._expr(child.value, name)
            elif isinstance(child, ast.comprehension):
                for part in (child.iter, *child.ifs):
                    yield from self._expr(part, name)


def _expression_mutants(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for swap in _COMPARE_SWAPS.get(type(op), ()):
                ops = [*node.ops]
                ops[index] = swap()
                yield _paren(ast.Compare(node.left, ops, node.comparators))
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield _paren(ast.BoolOp(other, node.values))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield _paren(node.operand)
    elif isinstance(node, ast.IfExp):
        yield _paren(ast.IfExp(ast.UnaryOp(ast.Not(), node.test), node.body, node.orelse))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        yield _paren(ast.BinOp(node.left, _BINOP_SWAPS[type(node.op)](), node.right))
    elif isinstance(node, ast.Constant):
        yield from (_paren(ast.Constant(v)) for v in _constant_mutants(node.value))
    elif isinstance(node, ast.JoinedStr):
        for index, part in enumerate(node.values):
            if isinstance(part, ast.Constant) and part.value:
                values = [*node.values]
                values[index] = ast.Constant("")
                yield _paren(ast.JoinedStr(values))
    elif isinstance(node, ast.Call) and not _is_log_call(node) and not _symmetric(node):
        args = node.args
        plain = len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args[:2])
        if plain and ast.dump(args[0]) != ast.dump(args[1]):
            swapped = [args[1], args[0], *args[2:]]
            yield _paren(ast.Call(node.func, swapped, node.keywords))


def _constant_mutants(value: object) -> list[_Value]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        if value == 0:
            return [1]
        smaller = value // 10 if abs(value) >= 10 else value - 1
        return [value * 10, smaller]
    if isinstance(value, float):
        return [value * 10, value / 10] if value else [1.0]
    if isinstance(value, str | bytes) and value:
        return [value[:0]]
    return []
