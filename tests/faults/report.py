"""The fault suite's report: a line per scenario, printed at the end of the run, so that a
slower recovery shows even when every invariant held."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportLine:
    scenario: str
    requests: int
    # Of those, refunds of earlier transfers (reverseTransaction) that were accepted.
    reversals: int
    attempts: int
    failed_attempts: int
    resends: int
    # Seconds from the fault's end (the moment the part that failed is started again) to the
    # first answered request after it.
    recovery_seconds: float
    slowest_settlement_seconds: float
    # Where the fault fell in the load, in seconds from its start.
    fault_began: float
    fault_ended: float
    load_ended: float
    # "invariants held", or the first line of what failed.
    outcome: str

    def __str__(self) -> str:
        return (
            f"{self.scenario:<34} {self.requests:>5} requests ({self.reversals:>3} refunds) "
            f"{self.attempts:>5} attempts "
            f"{self.failed_attempts:>4} failed {self.resends:>4} re-sent | "
            f"recovered in {self.recovery_seconds:5.2f} s, slowest settlement "
            f"{self.slowest_settlement_seconds:5.2f} s | fault at "
            f"{self.fault_began:.1f}-{self.fault_ended:.1f} s of {self.load_ended:.1f} s | "
            f"{self.outcome}"
        )


REPORT: list[ReportLine] = []
