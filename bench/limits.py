"""Every bound of the benchmark harness, each with what it costs; checked at import.

The harness follows the product's habit (STYLE habit 9): a queue, a loop, a batch or a
pool is sized by a named `<noun>_max` here, never by a literal at the call site.
"""

from __future__ import annotations

from typing import Final

# Concurrent closed-loop callers per scenario, over all load-generator processes. Each is one
# in-flight RPC; 64 is the load the targets are stated at.
callers_default: Final = 64
# The most callers a run may ask for: each costs a coroutine and an HTTP/2 stream, and more
# than this only queues inside the servers without telling anything new on 2 cores.
callers_max: Final = 1024
# Load-generator worker processes (each with its own event loop and channel). More processes
# than cores only steal CPU from the server under test.
loadgen_processes_max: Final = 8
# A call's deadline. A lock-based hot-account transfer can wait seconds; past this it is a
# DEADLINE_EXCEEDED error in the report rather than an unbounded wait.
call_deadline_s: Final = 30
# How long calls still in flight when the measured window closes may take to finish. Past it
# they are cancelled, counted as `unfinished`, and their latency so far (a lower bound) is
# kept: a deadlocked lock-based call would otherwise hold the run for its whole deadline.
drain_s_max: Final = 5
# Latency samples one worker keeps for one scenario (a list of ints, 8 bytes each inside a
# Python list: 2,000,000 samples are about 16 MB plus pickling back to the runner).
latency_samples_max: Final = 2_000_000

# Member accounts the transfer scenarios draw from (uniform); the hot scenarios use a prefix.
members_count: Final = 10_000
# Members of a quick run (`--quick`): enough that the uniform scenario still rarely meets
# contention with 64 callers, few enough that every contender's setup takes seconds.
members_quick_count: Final = 2_000
hot_wide_accounts_count: Final = 100
hot_narrow_accounts_count: Final = 4
# Merchants that fund the members during setup. Several, so the lock-based contender's setup
# is not serialised on one merchant row (setup is not timed, but it should not take minutes).
merchants_count: Final = 8
# Points each member starts with. Transfers move 1 point in a random direction, so a balance
# drifts like a random walk: 1,000,000 points outlast millions of transfers.
member_funding_points: Final = 1_000_000
# Concurrent setup RPCs (opening and funding accounts).
setup_callers_max: Final = 64

# Commands one ExecuteBulk request message may carry, by the contract (BULK_BATCH_TOO_LARGE).
bulk_message_commands_max: Final = 1000
# TransferPoints commands the load generator puts in one ExecuteBulk request message.
bulk_batch_commands_max: Final = 500
# Unanswered request messages one bulk stream keeps in flight: the contract's whole read
# window (the server reads a message only while fewer than 8 are unanswered), so the server
# always has the next batch at hand.
bulk_inflight_messages_max: Final = 8
# Concurrent bulk streams over all load-generator processes. One stream keeps 8 x 500 = 4,000
# transfers in flight: enough to keep a batching server busy, and at the ~2k/s of a
# per-command server a message still comes back within about 2 s.
bulk_streams_default: Final = 1
bulk_streams_max: Final = 8

# Connections in the lock-based contender's pool: one per concurrent transaction, sized to the
# 64 callers; PostgreSQL's max_connections (100 by default) must leave room for the rest.
lockbased_pool_connections_max: Final = 48
# How long one statement waits for a row lock before the contender gives up (lock_timeout).
# Well above deadlock_timeout (1 s by default), so a deadlock is reported as one.
lockbased_lock_wait_ms_max: Final = 10_000
# How long a command waits for a pooled connection.
lockbased_pool_wait_s_max: Final = 30
# How often the lock-based contender rewrites its stats file.
lockbased_stats_interval_ms: Final = 200
# Bulk commands of one request message the lock-based contender runs at once.
lockbased_bulk_parallel_max: Final = lockbased_pool_connections_max

# Threads that run the eventsourcing peer's blocking library calls, each holding at most one
# of the library's pooled PostgreSQL connections. The library serialises every write on a
# table lock, so more threads only add version conflicts and GIL contention: on the 2-core
# development VM 1, 2, 3, 4, 8, 16 and 32 threads gave 215, 372, 318, 380, 252, ~250 and 212
# uniform transfers/s and 243, 216, 134, 117, 62, ~50 and 23 on 4 hot accounts (one short
# run each, docs/benchmarks.md). 2 is the best overall: within noise of the best uniform
# figure and close to the single writer on hot4, which a multi-threaded server built on an
# optimistic-concurrency library would not limit itself to.
peer_threads_max: Final = 2
# Attempts the peer makes at one command that meets version conflicts (optimistic
# concurrency): each re-reads the accounts and saves again. Past the last, the caller gets
# ABORTED / CONCURRENT_MODIFICATION, as a lock-based deadlock victim does.
peer_attempts_max: Final = 8
# Aggregates the peer's repository keeps in memory (the library's AGGREGATE_CACHE_MAXSIZE,
# about 1 KB each): every benchmark account, so a read fast-forwards the cached account by
# its new events instead of replaying a hot account's whole history from the table.
peer_aggregate_cache_max: Final = 16_384
# How long the peer's insert waits for the library's table lock (POSTGRES_LOCK_TIMEOUT),
# and for a pooled connection (POSTGRES_CONNECT_TIMEOUT).
peer_lock_wait_s_max: Final = 10
peer_pool_wait_s_max: Final = 30

# The market scenario (orders on PTS-CNY, paid through the sandbox provider). Every order
# is priced within `market_spread_minor` of `market_price_minor` on either side, so most
# buys cross most sells: the book stays thin and most orders trade.
market_id: Final = "PTS-CNY"
market_price_minor: Final = 100
market_spread_minor: Final = 2
# Points per order, drawn from 1..this: a seller's 1,000,000 points outlast any run.
market_order_points_max: Final = 10
# Resting orders one caller keeps: past it the caller cancels its oldest before placing the
# next. It bounds the book (callers x this orders) and exercises CancelOrder.
market_resting_orders_max: Final = 4
# The sandbox provider's behaviour: a small delay before each callback, as a gateway that
# answers fast, and one payment in ten failing, so the cancel path is measured too.
market_payment_delay_ms: Final = 20
market_payment_failure_rate_bps: Final = 1_000
# After the load, how long the runner waits for every trade to leave PENDING_PAYMENT (the
# callbacks of the last trades, with the sandbox's redeliveries) before it checks the books.
market_settle_wait_s_max: Final = 30
# How long the Pointex check waits for its query server to catch up with the command server.
market_catch_up_wait_s_max: Final = 120
# Page size of the Pointex check's ListTrades and ListAccounts calls (the contract's most).
market_page_size_max: Final = 1_000
# Trades the lock-based contender matches for one order: an order of at most
# `market_order_points_max` points meets at most that many resting orders.
lockbased_matches_max: Final = 100
# Payment requests (CreatePayment calls to the sandbox) the lock-based contender has in
# flight at once; past it, newly matched trades wait for a slot.
lockbased_payment_requests_max: Final = 64
# Attempts at one CreatePayment that meets UNAVAILABLE, with a short pause between them.
lockbased_payment_attempts_max: Final = 5
# Digits of an order or trade id the lock-based contender accepts (a bigserial fits in 18).
lockbased_row_id_digits_max: Final = 18
# How far a callback's signed_at may be from the contender's clock (as Pointex's default).
lockbased_callback_window_s: Final = 300

# The projection replay (bench/replay.py). A log shorter than this is topped up with 1-point
# transfers in bulk before the replay, so that the rate is measured over enough events to mean
# something; the log the other scenarios leave is far longer.
replay_log_events_min: Final = 5_000
# Bulk messages (of `bulk_batch_commands_max` transfers) the top-up may send: each transfer
# appends at least one event, so 40 messages reach the minimum with room to spare.
replay_top_up_messages_max: Final = 40
# How long reading the log's head may wait for the feed's first message.
replay_head_wait_s_max: Final = 10
# Reads of the head, `replay_poll_interval_ms` apart, until two agree: the last steps of the
# load's transfers may still be appending when the replay starts (10 s at most).
replay_settle_polls_max: Final = 100
# How long the catch-up, and then the rebuild, may take. A full run's log (hundreds of
# thousands of events) replays in minutes on 2 cores; past this the row is pending.
replay_wait_s_max: Final = 1_200
# How often the rebuild's progress is polled (GetProjectionStatus). The rate itself comes
# from the server's timestamps, so the poll adds no error to it.
replay_poll_interval_ms: Final = 100

# How long the runner waits for a contender to print its port.
server_start_timeout_s: Final = 60
# How long a contender gets to exit after SIGTERM before it is killed.
server_stop_timeout_s: Final = 30
# Runs of each scenario (the report keeps the median by throughput, and every run).
repeat_max: Final = 9

assert 0 < callers_default <= callers_max
assert 0 < bulk_streams_default <= bulk_streams_max
assert bulk_inflight_messages_max <= 8, "the contract reads at most 8 unanswered messages"
assert 0 < bulk_batch_commands_max <= bulk_message_commands_max
assert hot_narrow_accounts_count < hot_wide_accounts_count <= members_count
assert hot_narrow_accounts_count >= 2, "a transfer needs two distinct accounts"
assert lockbased_lock_wait_ms_max > 1000, "must exceed PostgreSQL's default deadlock_timeout"
assert lockbased_stats_interval_ms < 1000
assert members_count % merchants_count == 0
assert hot_wide_accounts_count <= members_quick_count <= members_count
assert peer_aggregate_cache_max >= members_count + merchants_count, "every account stays cached"
assert 0 < peer_attempts_max <= 100
assert market_spread_minor < market_price_minor, "every price stays positive"
assert market_order_points_max <= lockbased_matches_max
assert market_resting_orders_max >= 1
assert replay_top_up_messages_max * bulk_batch_commands_max >= replay_log_events_min
