"""`wallet audit`: the ledger's rules checked over every row, in one snapshot.

PostgreSQL's constraints keep each row sound on its own; what no constraint can see is how rows
agree with each other: a balance with its entries, an entry with the one before it, a wallet's
held total with its holds, the money in the wallets with the money that came in and went out.
These checks read all of it in one REPEATABLE READ READ ONLY transaction, so every figure is of
the same moment while writes go on, and each check is one set-based statement (a window or a
grouping over a table, never a loop over rows here), so a million entries take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The checks, in the order they are printed. The statements name each by a short key in
# their column check_name ('sum', 'chain', ...), which _run maps to these.
SUM = "entries sum to the balance"
CHAIN = "each balance_after follows from the entry before"
NEGATIVE = "no negative balance, held or available"
HELD = "held is what ACTIVE holds reserve"
ENTRIES = "each transaction has the entries its status calls for"
MONEY = "money in wallets = deposits - withdrawals +/- reversals"
PENDING = "nothing PENDING too long"
REVERSALS = "reversals within their original"

_COVERED = text(
    """
    SELECT
      (SELECT count(*) FROM wallets) AS wallets,
      (SELECT count(*) FROM ledger_entries) AS entries,
      (SELECT count(*) FROM holds WHERE status = 'ACTIVE') AS active_holds,
      t.transactions, t.completed, t.pending, t.reversed, now() AS at
    FROM (
      SELECT count(*) AS transactions,
        count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
        count(*) FILTER (WHERE status = 'PENDING') AS pending,
        count(*) FILTER (WHERE reversal_claimed > 0 OR reversal_count > 0 OR id IN (
            SELECT reversal_of FROM transactions WHERE reversal_of IS NOT NULL
        )) AS reversed
      FROM transactions
    ) AS t
    """
)

# Every check below yields rows (check, subject, problem); this keeps `:show` of each check
# and counts all of them.
_FOUND = """
    SELECT check_name, subject, problem, found FROM (
      SELECT *, row_number() OVER (PARTITION BY check_name ORDER BY subject) AS n,
        count(*) OVER (PARTITION BY check_name) AS found
      FROM ({}) AS rows
    ) AS numbered
    WHERE n <= :show
"""

# One pass over the entries in (wallet, time) order, which ledger_entries_by_wallet_time
# holds: each entry against the one before it, then each wallet's sum and last entry against
# its balance. An entry follows when balance_after - before = delta: both balances are >= 0
# (a CHECK), so their difference cannot overflow a bigint whatever a tampered delta says,
# where before + delta could; numeric instead cost a third of the pass.
_LEDGERS = """
    WITH entries AS (
      SELECT wallet_id, id, created_at, delta, balance_after,
        coalesce(lag(balance_after) OVER w, 0) AS before,
        lead(id) OVER w IS NULL AS last
      FROM ledger_entries
      WINDOW w AS (PARTITION BY wallet_id ORDER BY created_at, id)
    ),
    ledgers AS (
      SELECT wallet_id, count(*) AS entries, sum(delta) AS total,
        max(balance_after) FILTER (WHERE last) AS last_after,
        count(*) FILTER (WHERE balance_after - before <> delta) AS broken,
        (array_agg(format('entry %s, has balance_after %s where the entry before and its '
                          'delta make %s', id, balance_after, before::numeric + delta)
                   ORDER BY created_at, id)
          FILTER (WHERE balance_after - before <> delta))[1] AS first_broken
      FROM entries GROUP BY wallet_id
    ),
    wallets_ AS (
      SELECT w.id, w.balance, coalesce(l.entries, 0) AS entries, coalesce(l.total, 0) AS total,
        coalesce(l.last_after, 0) AS last_after, coalesce(l.broken, 0) AS broken, l.first_broken
      FROM wallets w LEFT JOIN ledgers l ON l.wallet_id = w.id
    )
    SELECT 'sum' AS check_name, 'wallet ' || id AS subject,
      format('balance %s, but its %s entries sum to %s', balance, entries, total) AS problem
    FROM wallets_ WHERE total <> balance
    UNION ALL
    SELECT 'chain', 'wallet ' || id,
      format('%s of its entries do not follow from the one before; the first, %s',
             broken, first_broken)
    FROM wallets_ WHERE broken > 0
    UNION ALL
    SELECT 'chain', 'wallet ' || id,
      format('balance %s, but its last entry''s balance_after is %s', balance, last_after)
    FROM wallets_ WHERE last_after <> balance
"""

_WALLETS = """
    WITH reserved AS (
      SELECT wallet_id, count(*) AS holds, sum(amount) AS amount
      FROM holds WHERE status = 'ACTIVE' GROUP BY wallet_id
    )
    SELECT 'negative' AS check_name, 'wallet ' || w.id AS subject,
      format('balance %s, held %s, available %s', w.balance, w.held, w.balance - w.held)
        AS problem
    FROM wallets w WHERE w.balance < 0 OR w.held < 0 OR w.balance - w.held < 0
    UNION ALL
    SELECT 'held', 'wallet ' || w.id,
      format('held %s, but its %s ACTIVE holds reserve %s',
             w.held, coalesce(r.holds, 0), coalesce(r.amount, 0))
    FROM wallets w LEFT JOIN reserved r ON r.wallet_id = w.id
    WHERE w.held <> coalesce(r.amount, 0)
"""

# A COMPLETED transaction has one entry for each wallet it names: -amount for its sender,
# +amount for its receiver; a PENDING or FAILED one has none. Each entry is checked against
# its transaction here (one hash join); one entry per wallet and transaction is a unique key,
# so when the well-placed entries are as many as the wallets COMPLETED transactions name, none
# is missing, and each transaction's entries add up to what it brought in or took out (0 for
# a transfer). Only when they are fewer does _MISSING group the entries by transaction to
# name the ones short of entries: the slower statement runs only to explain a discrepancy.
_MISPLACED = """
    SELECT 'entries' AS check_name, 'transaction ' || t.id AS subject,
      format('%s %s of %s has entry %s of %s in wallet %s, where it moves %s', t.status, t.type,
             t.amount, e.id, e.delta, e.wallet_id,
             CASE WHEN t.status <> 'COMPLETED' THEN 'nothing, not being COMPLETED'
                  WHEN e.wallet_id = t.sender_wallet_id THEN (-t.amount)::text
                  WHEN e.wallet_id = t.receiver_wallet_id THEN t.amount::text
                  ELSE 'nothing' END) AS problem
    FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id
    WHERE NOT (
      t.status = 'COMPLETED' AND (
        (e.wallet_id = t.sender_wallet_id AND e.delta = -t.amount)
        OR (e.wallet_id = t.receiver_wallet_id AND e.delta = t.amount)
      )
    )
"""

_SLOTS = text(
    """
    SELECT coalesce(sum((sender_wallet_id IS NOT NULL)::int
                        + (receiver_wallet_id IS NOT NULL)::int), 0)
    FROM transactions WHERE status = 'COMPLETED'
    """
)

_MISSING = """
    WITH booked AS (
      SELECT transaction_id, count(*) AS entries FROM ledger_entries GROUP BY transaction_id
    )
    SELECT 'entries' AS check_name, 'transaction ' || t.id AS subject,
      format('COMPLETED %s of %s has %s entries, where %s belong', t.type, t.amount,
             coalesce(b.entries, 0), wanted) AS problem
    FROM transactions t
      CROSS JOIN LATERAL (
        SELECT (t.sender_wallet_id IS NOT NULL)::int + (t.receiver_wallet_id IS NOT NULL)::int
          AS wanted
      ) AS w
      LEFT JOIN booked b ON b.transaction_id = t.id
    WHERE t.status = 'COMPLETED' AND coalesce(b.entries, 0) < wanted
"""

# now(), not clock_timestamp(): the age as of the snapshot every other check reads.
_PENDING = """
    SELECT 'pending' AS check_name, 'transaction ' || id AS subject,
      format('%s of %s PENDING since %s (%s s)', type, amount, created_at,
             round(extract(epoch FROM now() - created_at))) AS problem
    FROM transactions
    WHERE status = 'PENDING' AND created_at < now() - CAST(:after AS interval)
"""

# What an original's reversals take of it, PENDING or COMPLETED, is what it has recorded as
# claimed; never more than its amount. Each reversal moves the money back the way it came.
_REVERSALS = """
    WITH reversals AS (
      SELECT r.reversal_of AS id, count(*) AS reversals,
        coalesce(sum(r.amount) FILTER (WHERE r.status <> 'FAILED'), 0) AS claimed,
        count(*) FILTER (WHERE r.sender_wallet_id IS DISTINCT FROM o.receiver_wallet_id
                           OR r.receiver_wallet_id IS DISTINCT FROM o.sender_wallet_id
                           OR r.currency <> o.currency) AS misdirected
      FROM transactions r JOIN transactions o ON o.id = r.reversal_of
      GROUP BY r.reversal_of
    ),
    originals AS (
      SELECT o.id, o.type, o.status, o.amount, o.reversal_claimed, o.reversal_count,
        coalesce(r.reversals, 0) AS reversals, coalesce(r.claimed, 0) AS claimed,
        coalesce(r.misdirected, 0) AS misdirected
      FROM transactions o LEFT JOIN reversals r ON r.id = o.id
      WHERE o.reversal_claimed > 0 OR o.reversal_count > 0 OR r.id IS NOT NULL
    )
    SELECT 'reversals' AS check_name, 'transaction ' || id AS subject,
      format('%s %s of %s: reversal_claimed %s, but its %s reversals not FAILED take %s',
             status, type, amount, reversal_claimed, reversals, claimed) AS problem
    FROM originals WHERE claimed <> reversal_claimed OR claimed > amount
    UNION ALL
    SELECT 'reversals', 'transaction ' || id,
      format('reversal_count %s, but it has %s reversals', reversal_count, reversals)
    FROM originals WHERE reversal_count <> reversals
    UNION ALL
    SELECT 'reversals', 'transaction ' || id,
      format('%s %s reversed, though only a COMPLETED deposit, withdrawal or transfer may be',
             status, type)
    FROM originals WHERE reversals > 0 AND (status <> 'COMPLETED' OR type = 'REVERSAL')
    UNION ALL
    SELECT 'reversals', 'transaction ' || id,
      format('%s of its reversals do not move its money back the way it came', misdirected)
    FROM originals WHERE misdirected > 0
"""

# What came in from outside (a transaction with a receiver only) less what went out (a sender
# only), per currency; a transfer moves money between wallets and changes no total.
_MONEY = text(
    """
    WITH in_wallets AS (
      SELECT currency, sum(balance) AS balances FROM wallets GROUP BY currency
    ),
    flows AS (
      SELECT currency,
        coalesce(sum(amount) FILTER (WHERE type = 'DEPOSIT'), 0) AS deposits,
        coalesce(sum(amount) FILTER (WHERE type = 'WITHDRAWAL'), 0) AS withdrawals,
        coalesce(sum(amount) FILTER (
          WHERE type = 'REVERSAL' AND receiver_wallet_id IS NULL), 0) AS reversed_out,
        coalesce(sum(amount) FILTER (
          WHERE type = 'REVERSAL' AND sender_wallet_id IS NULL), 0) AS reversed_in
      FROM transactions WHERE status = 'COMPLETED' GROUP BY currency
    )
    SELECT currency, coalesce(w.balances, 0), coalesce(f.deposits, 0),
      coalesce(f.withdrawals, 0), coalesce(f.reversed_out, 0), coalesce(f.reversed_in, 0)
    FROM in_wallets w FULL JOIN flows f USING (currency)
    ORDER BY currency
    """
)


@dataclass(frozen=True, slots=True)
class Discrepancy:
    subject: str  # what is wrong: "wallet <id>", "transaction <id>", a currency
    problem: str  # how, in figures (amounts in minor units)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    # What the check read, as (count, noun): (1000, "wallets").
    covered: tuple[tuple[int, str], ...]
    # How many discrepancies it found, all of them counted.
    found: int
    # The first of them, at most `show` (audit's argument).
    shown: tuple[Discrepancy, ...]
    # Why it was not run, when it was not.
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.found == 0


@dataclass(frozen=True, slots=True)
class MoneyFlow:
    """One currency's money, in minor units: what its wallets hold, and what COMPLETED
    transactions brought in from outside or took out."""

    currency: str
    balances: int
    deposits: int
    withdrawals: int
    reversed_out: int  # reversals with a sender only: a deposit's money given back
    reversed_in: int  # reversals with a receiver only: a withdrawal's money brought back

    @property
    def expected(self) -> int:
        return self.deposits - self.withdrawals - self.reversed_out + self.reversed_in


@dataclass(frozen=True, slots=True)
class AuditReport:
    snapshot_at: datetime
    checks: tuple[CheckResult, ...]
    money: tuple[MoneyFlow, ...]

    @property
    def discrepancies(self) -> int:
        return sum(check.found for check in self.checks)

    def lines(self) -> list[str]:
        """The report as an operator reads it: each check with what it covered, then every
        discrepancy shown under it."""
        width = max(len(check.name) for check in self.checks)
        lines = []
        for check in self.checks:
            if check.skipped is not None:
                lines.append(f"skip  {check.name:<{width}}  {check.skipped}")
                continue
            covered = ", ".join(f"{count:,} {noun}" for count, noun in check.covered)
            verdict = "ok  " if check.ok else "FAIL"
            found = "" if check.ok else f"  {check.found:,} found"
            lines.append(f"{verdict}  {check.name:<{width}}  {covered}{found}")
            if check.name == MONEY:
                lines += [f"      {_money_line(flow)}" for flow in self.money]
            lines += [f"      {d.subject}: {d.problem}" for d in check.shown]
            if check.found > len(check.shown):
                lines.append(f"      ... and {check.found - len(check.shown):,} more")
        return lines


def _money_line(flow: MoneyFlow) -> str:
    relation = "=" if flow.balances == flow.expected else "<>"
    return (
        f"{flow.currency}: balances {flow.balances:,} {relation} deposits {flow.deposits:,}"
        f" - withdrawals {flow.withdrawals:,} - reversed out {flow.reversed_out:,}"
        f" + reversed in {flow.reversed_in:,} = {flow.expected:,} (minor units)"
    )


async def audit(
    engine: AsyncEngine, *, pending_after: timedelta | None, show: int = 20
) -> AuditReport:
    """Run every check over the whole database, in one snapshot.

    `pending_after`: a transaction PENDING longer than this is a discrepancy; None skips that
    check (for a database where work is left PENDING on purpose). `show`: how many
    discrepancies of each check to keep in the report; all of them are counted.
    """
    async with engine.connect() as connection:
        snapshot = await connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with snapshot.begin():
            return await _run(snapshot, pending_after, show)


async def _run(
    connection: AsyncConnection, pending_after: timedelta | None, show: int
) -> AuditReport:
    covered = (await connection.execute(_COVERED)).mappings().one()
    found = _Found(show)
    await found.read(connection, _LEDGERS)
    await found.read(connection, _WALLETS)
    misplaced = await found.read(connection, _MISPLACED)
    slots = int((await connection.execute(_SLOTS)).scalar_one())
    if int(covered["entries"]) - misplaced < slots:
        await found.read(connection, _MISSING)
    await found.read(connection, _REVERSALS)
    if pending_after is not None:
        await found.read(connection, _PENDING, after=pending_after)
    money = tuple(
        MoneyFlow(str(row[0]), *(int(v) for v in row[1:]))
        for row in await connection.execute(_MONEY)
    )
    unbalanced = tuple(
        Discrepancy(
            flow.currency, f"balances and flows differ by {flow.balances - flow.expected:,}"
        )
        for flow in money
        if flow.balances != flow.expected
    )

    wallets = (int(covered["wallets"]), "wallets")
    entries = (int(covered["entries"]), "entries")
    checks = [
        found.result("sum", SUM, wallets, entries),
        found.result("chain", CHAIN, wallets, entries),
        found.result("negative", NEGATIVE, wallets),
        found.result("held", HELD, wallets, (int(covered["active_holds"]), "ACTIVE holds")),
        found.result("entries", ENTRIES, (int(covered["transactions"]), "transactions"), entries),
        CheckResult(
            MONEY,
            (
                (int(covered["completed"]), "COMPLETED transactions"),
                (len(money), "currency" if len(money) == 1 else "currencies"),
            ),
            len(unbalanced),
            unbalanced,
        ),
    ]
    pending = (int(covered["pending"]), "PENDING transactions")
    if pending_after is None:
        checks.append(
            CheckResult(PENDING, (pending,), 0, (), skipped="skipped: no threshold given")
        )
    else:
        over = f"nothing PENDING over {pending_after.total_seconds():g} s"
        checks.append(replace(found.result("pending", PENDING, pending), name=over))
    reversed_ = (int(covered["reversed"]), "reversed transactions")
    checks.append(found.result("reversals", REVERSALS, reversed_))
    return AuditReport(covered["at"], tuple(checks), money)


class _Found:
    """The discrepancies the statements found, by check: the first `show` of each, and how
    many in all (a check may be fed by more than one statement)."""

    def __init__(self, show: int) -> None:
        self._show = show
        self._shown: dict[str, list[Discrepancy]] = {}
        self._counts: dict[str, int] = {}

    async def read(self, connection: AsyncConnection, statement: str, **params: object) -> int:
        """Run one statement of rows (check_name, subject, problem); returns how many it
        found."""
        # Only this module's constant statements are put in; values travel as parameters.
        query = text(_FOUND.format(statement))
        rows = await connection.execute(query, {"show": self._show, **params})
        counted: dict[str, int] = {}
        for row in rows:
            counted[row.check_name] = int(row.found)
            shown = self._shown.setdefault(row.check_name, [])
            if len(shown) < self._show:
                shown.append(Discrepancy(row.subject, row.problem))
        for name, count in counted.items():
            self._counts[name] = self._counts.get(name, 0) + count
        return sum(counted.values())

    def result(self, key: str, name: str, *covered: tuple[int, str]) -> CheckResult:
        return CheckResult(name, covered, self._counts.get(key, 0), tuple(self._shown.get(key, ())))
