"""`python -m bench mutants [--module security|manager|store|media-token|all] [--smoke]`.

Mutation testing of the code that guards money and privacy: each small deliberate change to it
(a mutant) must make one of its tests fail. Prints the surviving mutants (file:line, the change)
and a table per file and per module: mutants, killed, judged equivalent (targets.EQUIVALENT,
each with its reason), survived, kill rate over the non-equivalent ones, wall time.
"""

from __future__ import annotations

from typing import Any

from bench.mutants.runner import Outcome
from bench.mutants.runner import run as run_mutants
from bench.mutants.targets import MODULES

CHOICES = ("all", *MODULES)


def _row(module: str, what: str, outcomes: list[Outcome]) -> dict[str, Any]:
    total = sum(o.total for o in outcomes)
    killed = sum(o.killed for o in outcomes)
    equivalent = sum(o.equivalent for o in outcomes)
    judged = total - equivalent
    return {
        "module": module,
        "file": what,
        "mutants": total,
        "killed": killed,
        "equivalent": equivalent,
        "survived": judged - killed,
        "kill rate": f"{100 * killed / judged:.1f}%" if judged else "-",
        "wall s": round(sum(o.seconds for o in outcomes), 1),
    }


def run(smoke: bool, module: str = "all") -> list[dict[str, Any]]:
    outcomes = run_mutants(smoke, module)
    for outcome in outcomes:
        for mutant in outcome.survivors or []:
            print(f"survived: {mutant.describe()}")
    rows: list[dict[str, Any]] = []
    for name in MODULES:
        mine = [o for o in outcomes if o.target.module == name]
        if not mine:
            continue
        rows += [_row(name, o.target.path.removeprefix("src/voice_call/"), [o]) for o in mine]
        rows.append(_row(name, "**all of it**", mine))
    return rows
