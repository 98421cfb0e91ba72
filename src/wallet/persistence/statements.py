"""The SQL the unit of work sends to asyncpg, as text prepared once per connection.

Kept apart from the code that runs it so that a statement and the comment on why it is
written that way read together, and the unit of work reads as Python.
"""

from __future__ import annotations

import functools

ADD_WALLET = """
    INSERT INTO wallets (id, owner_id, currency, balance) VALUES ($1, $2, $3, $4)
    RETURNING *
"""
GET_WALLETS = "SELECT * FROM wallets WHERE id = ANY($1::uuid[])"
FACTS = "SELECT id, currency, owner_id FROM wallets WHERE id = ANY($1::uuid[])"
# LockRows sits above the Sort in the plan, so the rows are locked in id order. FOR NO KEY
# UPDATE, not FOR UPDATE: inserting a transaction takes KEY SHARE locks on its wallets (the
# foreign keys), which FOR UPDATE would conflict with, so recording a transfer would wait for
# (and deadlock with) settlements of the same wallets.
LOCK_WALLETS = """
    SELECT * FROM wallets WHERE id = ANY($1::uuid[])
    ORDER BY id FOR NO KEY UPDATE
"""
# Those of the wallets nobody else has locked, at once: never waits, so never deadlocks.
LOCK_FREE_WALLETS = LOCK_WALLETS + " SKIP LOCKED"
# How long the next lock may be waited for (ms; 0 for ever), for the rest of the transaction.
LOCK_TIMEOUT = "SELECT set_config('lock_timeout', $1, true)"
GET_TRANSACTION = "SELECT * FROM transactions WHERE id = $1"
# Originals of reversals, in id order. FOR NO KEY UPDATE, as for wallets: recording a
# reversal takes a KEY SHARE lock on its original (the foreign key), which must not wait.
LOCK_TRANSACTIONS = """
    SELECT * FROM transactions WHERE id = ANY($1::uuid[])
    ORDER BY id FOR NO KEY UPDATE
"""
# Transactions asked for by id, and the rest of their atomic batches by batch id, for
# settle() and fail_pending(), which keep the PENDING ones. Each id looked up on its own (the
# LIMIT keeps the planner from flattening the lookup into a join), not `id = ANY($1) AND
# status = 'PENDING'`: with a backlog of PENDING ones, the planner walked all of them through
# transactions_pending (a table never analyzed) or read the whole table (analyzed): 8 to 37
# ms for 1,024 ids among 60,000 PENDING, where 1,024 lookups take 2. A status test here
# would lure it back to that index.
ASKED = """
    SELECT t.* FROM unnest($1::uuid[]) AS asked(id)
    CROSS JOIN LATERAL (SELECT * FROM transactions WHERE id = asked.id LIMIT 1) AS t
    ORDER BY t.created_at, t.id
"""
ASKED_BATCHES = """
    SELECT t.* FROM unnest($1::uuid[]) AS asked(batch_id)
    JOIN transactions AS t ON t.batch_id = asked.batch_id
    ORDER BY t.created_at, t.id
"""
# Locked one by one in the order asked, which is the order they were recorded (settle()
# asks in that order), after their wallets.
LOCK_ASKED = """
    SELECT t.id, t.status FROM unnest($1::uuid[]) WITH ORDINALITY AS asked(id, n)
    CROSS JOIN LATERAL (
        SELECT id, status FROM transactions WHERE id = asked.id FOR UPDATE
    ) AS t
    ORDER BY asked.n
"""
# ON CONFLICT waits for a concurrent holder of the key to commit or roll back, so a duplicate
# sent at the same time sees the first one's outcome. In key order: two units of work claiming
# overlapping keys then wait for each other in one direction only, never in a cycle.
CLAIM_KEYS = """
    INSERT INTO idempotency_keys (
        caller_id, key, operation, fingerprint, transaction_id, wallet_id, hold_id
    )
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::uuid[], $7::uuid[]
    ) AS v(caller_id, key, operation, fingerprint, transaction_id, wallet_id, hold_id)
    ORDER BY caller_id, key
    ON CONFLICT (caller_id, key) DO NOTHING
    RETURNING caller_id, key
"""
# CLAIM_KEYS' parameters, the columns of each record in its unnest()'s order.
CLAIMED = (
    "caller_id",
    "key",
    "operation",
    "fingerprint",
    "transaction_id",
    "wallet_id",
    "hold_id",
)
# Keys are (caller id, key) pairs, given as two arrays of equal length.
GET_KEYS = """
    SELECT caller_id, key, operation, fingerprint, transaction_id, wallet_id, hold_id
    FROM idempotency_keys
    WHERE (caller_id, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
RELEASE_KEYS = """
    DELETE FROM idempotency_keys
    WHERE (caller_id, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""

# Transactions recorded together are stamped a microsecond apart, in the order given, so
# that settle() (by created_at, id) decides them in the order they were sent. Entries are
# numbered in the order given, so a wallet's entries of one statement (which share its
# timestamp) read back, by (created_at, id), in the order its balance went through them.
#
# What one step writes goes in one statement, whatever its size: each part (transactions
# recorded, outcomes decided, balances, ledger entries) travels as arrays. Only the parts a
# step has are in its statement: an empty part still costs the executor its set-up (a third
# of a submission's statement, on both ends). The foreign keys are checked at the end of the
# statement, when every part has run, so entries may refer to transactions recorded with
# them. One clock reading stamps them all. Versions need no reading back: the wallets are
# locked, so each goes up by exactly one. Each part names the columns (rows.py) it takes,
# with their types, in the order its unnest() takes them.
PARTS: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "recorded": (
        (
            ("id", "uuid"),
            ("type", "text"),
            ("status", "text"),
            ("amount", "bigint"),
            ("currency", "text"),
            ("sender_wallet_id", "uuid"),
            ("receiver_wallet_id", "uuid"),
            ("client_transaction_id", "text"),
            ("failure_code", "text"),
            ("error_message", "text"),
            ("hold_id", "uuid"),
            ("batch_id", "uuid"),
            ("description", "text"),
            ("reversal_of", "uuid"),
        ),
        """
        INSERT INTO transactions (
            id, type, status, amount, currency, sender_wallet_id, receiver_wallet_id,
            client_transaction_id, failure_code, error_message, hold_id, batch_id, description,
            reversal_of, created_at, completed_at
        )
        SELECT v.id, v.type, v.status, v.amount, v.currency, v.sender, v.receiver, v.key,
               v.code, v.message, v.hold, v.batch, v.description, v.reversal_of, at.at,
               CASE WHEN v.status <> 'PENDING' THEN at.at END
        FROM now, unnest({}) WITH ORDINALITY
            AS v(id, type, status, amount, currency, sender, receiver, key, code, message,
                 hold, batch, description, reversal_of, n),
            LATERAL (SELECT now.at + (v.n - 1) * interval '1 microsecond' AS at) AS at
        ORDER BY v.n
        RETURNING *
        """,
    ),
    "decided": (
        (("id", "uuid"), ("status", "text"), ("failure_code", "text"), ("error_message", "text")),
        """
        UPDATE transactions AS t
        SET status = v.status, failure_code = v.code, error_message = v.message,
            completed_at = coalesce(t.completed_at, now.at)
        FROM now, unnest({}) AS v(id, status, code, message)
        WHERE t.id = v.id
        RETURNING t.id
        """,
    ),
    "balances": (
        (("id", "uuid"), ("balance", "bigint"), ("held", "bigint")),
        """
        UPDATE wallets AS w
        SET balance = v.balance, held = v.held, version = w.version + 1, updated_at = now.at
        FROM now, unnest({}) AS v(id, balance, held)
        WHERE w.id = v.id
        """,
    ),
    "entries": (
        (
            ("transaction_id", "uuid"),
            ("wallet_id", "uuid"),
            ("delta", "bigint"),
            ("balance_after", "bigint"),
        ),
        """
        INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after, created_at)
        SELECT v.transaction_id, v.wallet_id, v.delta, v.balance_after, now.at
        FROM now, unnest({}) WITH ORDINALITY
            AS v(transaction_id, wallet_id, delta, balance_after, n)
        ORDER BY v.n
        """,
    ),
    # What the reversals of these (locked) originals take of them.
    "originals": (
        (("id", "uuid"), ("reversal_claimed", "bigint"), ("reversal_count", "integer")),
        """
        UPDATE transactions AS t SET reversal_claimed = v.claimed, reversal_count = v.count
        FROM unnest({}) AS v(id, claimed, count)
        WHERE t.id = v.id
        """,
    ),
}


@functools.cache
def names(part: str) -> tuple[str, ...]:
    return tuple(name for name, _ in PARTS[part][0])


@functools.cache
def write_statement(parts: tuple[str, ...]) -> str:
    """The statement writing these parts (in PARTS' order), from constant fragments only."""
    ctes = ["now AS (SELECT clock_timestamp() AS at)"]
    number = 0
    for name in parts:
        columns, body = PARTS[name]
        arrays = []
        for _, sql_type in columns:
            number += 1
            arrays.append(f"${number}::{sql_type}[]")
        ctes.append(f"{name} AS ({body.format(', '.join(arrays))})")
    # Only the recorded rows come back whole (the rest of a decided row is what its writer
    # holds): read back and decoded before the commit, a settlement's 256 rows held its
    # wallets' locks a millisecond longer. Decided rows are counted, that none was missed.
    # S608: every piece is one of the constants above; the values travel as parameters.
    decided = "(SELECT count(*) FROM decided)" if "decided" in parts else "NULL::bigint"
    head = f"SELECT now.at AS written_at, {decided} AS decided"
    if "recorded" in parts:
        tail = f"{head}, recorded.* FROM now LEFT JOIN recorded ON true"
    else:
        tail = f"{head}, NULL::uuid AS id FROM now"
    return f"WITH {', '.join(ctes)} {tail}"


# Submissions in one statement: each one's idempotency key and its PENDING transaction
# together, or, when its key is already taken, neither (ON CONFLICT waits for a concurrent
# holder of the key to commit or roll back). Keys are claimed in (caller id, key) order, so
# statements claiming overlapping keys never wait for each other in a cycle. The keys'
# foreign keys to their transactions are deferred: checked once every row is in.
SUBMIT = """
    WITH now AS (SELECT clock_timestamp() AS at),
    v AS (
        SELECT * FROM unnest(
            $1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::uuid[], $6::uuid[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]
        ) WITH ORDINALITY AS v(
            id, type, amount, currency, sender, receiver, reference, description, caller_id,
            key, operation, fingerprint, n
        )
    ),
    claimed AS (
        INSERT INTO idempotency_keys (caller_id, key, operation, fingerprint, transaction_id)
        SELECT caller_id, key, operation, fingerprint, id FROM v
        WHERE key IS NOT NULL ORDER BY caller_id, key
        ON CONFLICT (caller_id, key) DO NOTHING
        RETURNING transaction_id
    )
    INSERT INTO transactions (
        id, type, status, amount, currency, sender_wallet_id, receiver_wallet_id,
        client_transaction_id, description, created_at
    )
    SELECT v.id, v.type, 'PENDING', v.amount, v.currency, v.sender, v.receiver, v.reference,
           v.description, now.at + (v.n - 1) * interval '1 microsecond'
    FROM now, v
    WHERE v.key IS NULL OR v.id IN (SELECT transaction_id FROM claimed)
    ORDER BY v.n
    RETURNING *
"""
# SUBMIT's parameters: these columns of each transaction, then these of its key's record.
SUBMITTED = (
    "id",
    "type",
    "amount",
    "currency",
    "sender_wallet_id",
    "receiver_wallet_id",
    "client_transaction_id",
    "description",
)
SUBMITTED_KEYS = ("caller_id", "key", "operation", "fingerprint")


# Holds. Each hold row is locked only by one who holds its wallet's lock (capture, void,
# expiry), so once the wallet is locked, locking the hold never waits.
ADD_HOLD = """
    INSERT INTO holds (
        id, wallet_id, receiver_wallet_id, amount, currency, status, client_transaction_id,
        description, expires_at
    ) VALUES ($1, $2, $3, $4, $5, 'ACTIVE', $6, $7, $8)
    RETURNING *
"""
# ADD_HOLD's parameters, in order.
ADDED_HOLD = (
    "id",
    "wallet_id",
    "receiver_wallet_id",
    "amount",
    "currency",
    "client_transaction_id",
    "description",
    "expires_at",
)
GET_HOLD = "SELECT * FROM holds WHERE id = $1"
# The holds_due index, oldest expiry first.
DUE_HOLDS = """
    SELECT * FROM holds WHERE status = 'ACTIVE' AND expires_at <= $1
    ORDER BY expires_at LIMIT $2
"""
LOCK_HOLDS = """
    SELECT * FROM holds WHERE id = ANY($1::uuid[]) AND status = 'ACTIVE'
    ORDER BY id FOR UPDATE
"""
CLOSE_HOLDS = """
    WITH now AS (SELECT clock_timestamp() AS at)
    UPDATE holds AS h
    SET status = v.status, captured_amount = v.captured, capture_transaction_id = v.capture,
        closed_at = now.at
    FROM now, unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[])
        AS v(id, status, captured, capture)
    WHERE h.id = v.id AND h.status = 'ACTIVE'
    RETURNING h.*
"""
# CLOSE_HOLDS' parameters, in order.
CLOSED_HOLD = ("id", "status", "captured_amount", "capture_transaction_id")
