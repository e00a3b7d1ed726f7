"""Name every bound the server places on a queue, a batch, a loop or a payload.

Each bound says what raising it costs. The relationships between bounds are asserted at
import, so a change that breaks one fails at start rather than under load. Units come last
in every name (``_ms``, ``_bytes``, ``_events``). This module imports nothing from the
project, so every module (the sandbox provider's too) can read it without a cycle.

Not here, because they are not bounds: ``eventstore.port.SLICES`` (1024) is part of the event
contract, stored with every event, and fixed forever (changing it would re-slice history);
unit conversions (``BPS_PER_UNIT``, ``_MS_PER_S``), schema and token format versions and
layouts, and the id lengths the contract spells in its patterns (1-64 and 1-128 id characters).
"""

# --- Event store: pages and batches -------------------------------------------------------

# Events in one page of read_stream/read_all, and so in one subscriber page. A page is held in
# memory whole; raising it costs memory per reader and lengthens each read query.
read_batch_events_max = 1000

# Events written by one database transaction (one append, or one group commit of many
# units). The position lock is held for the whole transaction, so a larger batch makes every
# other writer wait longer, in exchange for fewer commits (fsyncs) per event.
append_batch_events_max = 1000

# Independent units in one group commit. Each unit carries at least one event, so this can
# never usefully exceed append_batch_events_max; raising it lengthens the per-unit
# bookkeeping done while the position lock is held (none on the one-call path, which
# plans before it sends). At 256, a bulk batch of three-event transfers stopped at 768 events
# a commit; at the bound, at 999 (+6% bulk throughput side by side, docs/benchmarks.md).
append_batch_units_max = 1000

# Bounds of a command server's slice-range lease (POINTEX_SLICE_LEASE_MS). It renews a third
# of the way, so a shorter lease spends more round trips; a longer one leaves a range without
# an owner longer after its owner died (docs/scale-out.md).
slice_lease_ms_min = 500
slice_lease_ms_max = 600_000

# Longest wait for another command server to take a step of a process on its account
# (grpc_edge/peer.py); a step not taken by then is retried, as after a store failure.
peer_call_s = 10.0

# Events from which a PostgreSQL group commit, planned on the versions its units expect, goes
# as one call of append_events instead of a locked transaction of five round trips. Large
# batches (bulk) gain (+17% bulk throughput measured side by side); small ones, under a closed
# loop of unary calls, lost 2-4%: the shorter commit left less time for the next batch to
# gather, so more commits were paid per transfer. docs/benchmarks.md has the figures.
append_one_statement_events_min = 200

# Streams written atomically by one unit (a transfer touches two accounts and a process; an
# order placement its market, one stream per trade it creates and its request record).
# Each stream costs one version check under the position lock.
append_unit_streams_max = 128

# Events a subscriber buffers: exactly one page of read_all. Raising it costs memory per
# live subscriber (the feed keeps one page per connected client).
subscribe_buffer_events_max = read_batch_events_max

# --- Event store: payload sizes -------------------------------------------------------------

# Bytes of a stream id ("category-id") in UTF-8. Every index entry repeats it.
stream_id_bytes_max = 200

# Bytes of an event type name in UTF-8 ("PointsTransferred"). Stored with every event.
event_type_bytes_max = 128

# Bytes of one event's serialized payload. Events of this domain are a few hundred bytes;
# the bound keeps a page of reads (read_batch_events_max of them) to tens of MiB at worst.
event_data_bytes_max = 16 * 1024

# Bytes of one event's metadata (request id, causation, correlation).
event_metadata_bytes_max = 2 * 1024

# Bytes of UTF-8 in a command's free text (memo, reason), as the contract states
# (common.proto); longer text is FIELD_TOO_LONG. The text is stored in the event it causes
# and copied into read models and notifications, so it counts against event_data_bytes_max.
text_bytes_max = 256

# Bytes of UTF-8 in an account's display name (common.proto); longer is FIELD_TOO_LONG.
# Stored with the account's opening event and sent with every read of the account.
display_name_bytes_max = 128
# Ids on the wire (accounts, orders, markets' providers, partners...) and request ids: id
# characters (A-Z a-z 0-9 _ . : -), at most this many.
id_chars_max = 64
request_id_chars_max = 128

# Bytes held by one page of reads at worst; a reader allocates up to this much per page.
read_batch_bytes_max = 32 * 1024 * 1024

# Bytes of payload in one append transaction at worst; the writer holds all of it in memory
# and sends it in one round trip while holding the position lock.
append_batch_bytes_max = 32 * 1024 * 1024

# Bytes of one snapshot (an order book is the largest state). Loading it costs this much
# memory per activation.
snapshot_data_bytes_max = 4 * 1024 * 1024

# --- Event store: connections, timeouts and waits -------------------------------------------

# Connections in one process's PostgreSQL pool (one writer plus readers and feeds). Each costs
# a backend process on the server (a few MiB) and a slot of max_connections.
pg_pool_connections_max = 10

# Longest single statement on PostgreSQL before it is cancelled and reported unavailable.
# A larger value lets a stuck server hold a caller (and the position lock) longer.
pg_statement_ms_max = 30_000

# Longest wait to open a PostgreSQL connection or to take one from the pool.
pg_connect_ms_max = 10_000

# Longest wait of a SQLite connection for another connection's lock before it reports the
# store unavailable. A larger value hides contention from other processes longer.
sqlite_busy_ms_max = 5_000

# Attempts, and the pause between them, to switch a new SQLite file to WAL. Connections that
# switch at once deadlock on the file lock, and SQLite then answers BUSY at once rather than
# waiting, so the store retries; the product bounds how long the first open may wait.
sqlite_wal_switch_attempts_max = 100
sqlite_wal_switch_pause_ms = 10

# Longest a caught-up subscriber sleeps before re-reading the head without a wake-up signal.
# In-process appends (and PostgreSQL NOTIFY) wake it at once; this bounds the delay for appends
# made by other processes when no notification arrives. Lower costs more idle queries.
subscribe_idle_ms_max = 250

# Whole-transaction retries of an append whose insert hit the unique (stream, version) index.
# The position lock makes that race impossible for writers that follow the protocol, so one
# retry (which re-checks every expected version under the lock) is enough.
append_race_retries_max = 1

# Numbered migration files per backend (the file name holds four digits).
migrations_max = 9999

# --- Relationships -------------------------------------------------------------------------

assert append_batch_events_max <= read_batch_events_max
assert append_batch_units_max <= append_batch_events_max
assert 1 <= append_one_statement_events_min <= append_batch_events_max
assert append_unit_streams_max <= append_batch_events_max
assert subscribe_buffer_events_max >= read_batch_events_max
assert read_batch_events_max * (event_data_bytes_max + event_metadata_bytes_max) <= (
    read_batch_bytes_max
)
assert append_batch_events_max * (event_data_bytes_max + event_metadata_bytes_max) <= (
    append_batch_bytes_max
)
assert snapshot_data_bytes_max <= read_batch_bytes_max
assert text_bytes_max + display_name_bytes_max < event_data_bytes_max
assert subscribe_idle_ms_max < pg_statement_ms_max
assert sqlite_wal_switch_attempts_max * sqlite_wal_switch_pause_ms <= sqlite_busy_ms_max
assert pg_pool_connections_max > 0
assert append_race_retries_max >= 0

# --- Command side: queues ------------------------------------------------------------------

# Events waiting for the group-commit writer. Past it, callers get RESOURCE_EXHAUSTED
# (OVERLOADED) at once instead of queueing without bound; each waiting event holds its
# caller's RPC and payload in memory.
commit_queue_events_max = 50_000

# How long an overloaded caller is told to wait before retrying (RetryInfo).
overload_retry_after_ms = 100

# One partner's unary calls and streams (notification watches, bulk streams) in flight on
# one server; past them its next call is shed (RESOURCE_EXHAUSTED / OVERLOADED) while other
# partners go on (grpc_edge/admission.py). Well above what one partner's SDK or the
# benchmark's 64 closed-loop callers keep in flight.
partner_calls_in_flight_max = 512
partner_streams_max = 64

# Longest a client-streaming call refused before its handler runs (credentials, role,
# admission) waits for the client's first message or half-close before its status is sent.
# grpcio's asyncio client reports a write that loses the race with the status as INTERNAL
# instead of the server's status (grpc/grpc#36066); waiting lets the first write land. A
# client that sends nothing holds its refused call (and nothing else) this long at most.
refused_stream_settle_ms = 500

# How long a caller is told to wait before retrying (RetryInfo) when the store is unavailable,
# a commit's outcome is unknown or the server is shutting down (grpc_edge/status.py). Longer
# than the overload hint: the cause usually takes longer to pass, and a shorter hint costs
# more retries against a store that is down.
unavailable_retry_after_ms = 200

# --- Event feed -------------------------------------------------------------------------------

# Events buffered per EventFeed subscriber between the store reader and the gRPC writer. A
# subscriber that reads slowly holds its reader back at this bound (plus one store page), so
# memory per subscriber is bounded whatever its lag.
feed_buffer_events_max = 2_000

# Events in one EventBatch message: the subscriber's max_batch_size may not exceed it. Larger
# batches mean fewer messages but a bigger message (at most a few hundred bytes an event).
# The default is what a subscriber gets when it asks for 0; both are in event_feed.proto.
feed_batch_events_max = 1_000
feed_batch_events_default = 100

# Categories one subscriber may filter on (event_feed.proto: at most 16); more is
# INVALID_FIELD. Each event read is matched against the set, which costs little, but the set
# is held for the life of the subscription.
feed_filter_categories_max = 16

# Idle time after which a caught-up subscriber gets a heartbeat with the head position.
feed_heartbeat_ms = 5_000

# --- gRPC transport ---------------------------------------------------------------------------

# Largest message either way. Commands are small; a bulk batch of bulk_commands_max commands
# stays well under it. Larger messages get RESOURCE_EXHAUSTED from the gRPC library.
grpc_message_bytes_max = 4 * 1024 * 1024

# Largest metadata (headers) of a call; a bearer token and tracing headers fit easily.
grpc_metadata_bytes_max = 16 * 1024

# Concurrent RPCs a server runs; past it the library answers RESOURCE_EXHAUSTED. Each RPC in
# flight costs a task and its request in memory.
grpc_concurrent_rpcs_max = 10_000

# Keepalive pings on idle connections, and how long to wait for the answer; clients must not
# ping more often than grpc_ping_interval_ms_min or they are sent GOAWAY.
grpc_keepalive_time_ms = 30_000
grpc_keepalive_timeout_ms = 10_000
grpc_ping_interval_ms_min = 10_000

# Authorization headers remembered as valid, so that repeated calls skip the hash and the
# constant-time scan of the tokens table. One per token, plus variants of its spacing.
proven_tokens_max = 1024

# Failed authentications a peer address may make in the window before it is refused
# (RESOURCE_EXHAUSTED / AUTH_RATE_LIMITED) until the window lets its oldest failure go; a
# token it has already proven still works meanwhile. Enough for a person mistyping, far
# too few to guess a token (256 random bits).
auth_failures_per_peer_max = 20
auth_failure_window_ms = 60_000
# Peers whose failures are counted; past it the one quiet the longest is forgotten.
auth_peers_tracked_max = 10_000
# How often the servers look whether the tokens file changed (and read it again if so).
tokens_reload_interval_ms = 1000

# --- Domain amounts ---------------------------------------------------------------------------

# Points one command may move. Far below int64 so that sums of many amounts cannot overflow.
points_amount_max = 10**12

# Points one account may hold (available + held).
points_balance_max = 10**15

# Issues pending activation one account holds at once (IssuePoints.activates_at); one more is
# refused (TOO_MANY_PENDING_ISSUES). Each is kept in the account's state and snapshot, and
# watched by the activation timer until it activates.
pending_issues_max = 1000

# Lots of expiring points one member account keeps (program expiry, domain/lots.py). Points
# earned in one second share a lot; past the bound the newest two lots merge into one lapsing
# with the later, so no point lapses earlier than it was promised to. Kept in the account's
# state and snapshot.
lots_per_account_max = 1000

# The longest lifetime a program's expiry policy may give points (ProgramRules.expiry).
expiry_lifetime_days_max = 36_600

# The longest cooling-off window a program may set (ProgramRules.cooling_off).
cooling_off_days_max = 365

# Market purchases one account keeps as refundable at once (cooling-off); past the bound the
# oldest is no longer refundable. Kept in the account's state and snapshot.
refundable_purchases_max = 100

# How far ahead an issue's activation may be (IssuePoints.activates_at); further is
# INVALID_FIELD. Bounds how long the activation timer and recovery keep an issue.
pending_activation_days_max = 400

# Longest the activation timer sleeps without looking at the clock: a clock that jumps is
# noticed within this; lower costs a wake-up more often when nothing is due.
activation_timer_wait_ms_max = 1000

# Limits in the program's rules (common.proto ProgramRules). Every account actor holds an
# index of them and every rules change is one event carrying them all.
program_limits_max = 256

assert feed_batch_events_max <= feed_buffer_events_max
assert 1 <= feed_batch_events_default <= feed_batch_events_max
assert commit_queue_events_max >= append_batch_events_max
assert points_amount_max <= points_balance_max
assert points_balance_max < 2**63
assert grpc_keepalive_time_ms >= grpc_ping_interval_ms_min

# --- Garbage collector (command server) ----------------------------------------------------

# Container allocations (net of frees) between two young-generation collections, and young
# collections between two middle-generation ones; see command/main.py. Every command
# allocates futures, callbacks and records that live until its commit, so with the
# interpreter's defaults (700, 10, 10) the collector ran almost continuously and full
# collections, which walk every resident actor, took about half of the bulk path's CPU. A
# larger value costs memory held by cyclic garbage until the next collection (a few MiB).
gc_young_allocations_max = 50_000
gc_young_collections_max = 20
gc_middle_collections_max = 100

# --- Actors -----------------------------------------------------------------------------------

# Account actors kept in memory; past it the least recently used idle ones are dropped (their
# state is in the store). Each costs its state and a few small objects (about 1 KiB), and a
# passivated account costs a store read when it is next used.
actors_resident_max = 100_000

# Messages queued for one actor while it loads or reloads. Past it the caller gets
# RESOURCE_EXHAUSTED (MAILBOX_FULL) at once. A ready actor handles a message on arrival,
# so the bound matters only while it waits for the store.
mailbox_messages_max = 10_000

# Events between two snapshots of an account. An activation replays at most this many events
# after its snapshot; a lower value writes snapshots more often (one row upsert each).
snapshot_interval_events = 100

# Busy actors skipped when looking for one to passivate, per activation. Bounds the work an
# activation does; a larger value passivates more eagerly under churn.
passivation_scan_actors_max = 64

# --- Bulk commands --------------------------------------------------------------------------

# Commands in one ExecuteBulk message. They run concurrently and are answered in one message,
# so a batch holds this many commands and results in memory at once.
bulk_commands_max = 1_000

# ExecuteBulk messages a stream may have in flight before the server stops reading; HTTP/2
# flow control then holds the sender back. Each costs a batch of concurrent commands.
bulk_messages_in_flight_max = 8

assert bulk_commands_max * bulk_messages_in_flight_max <= commit_queue_events_max

# --- Idempotency records ---------------------------------------------------------------------

# Record streams asked about in one store read. Each costs an index probe inside the query;
# a larger read answers more commands per round trip but holds its callers a little longer.
record_lookup_streams_max = 1_000
# Streams whose first events one store read returns (a process's records, read to take its
# next step), and how many events of each at most: a read of at most 3,000 rows.
read_starts_streams_max = 1_000
read_starts_events_max = 3

# --- Processes (transfers, order placements, trades) ------------------------------------------

# Backoff between attempts of a process step that failed for an operating reason (store down,
# overload, a provider unavailable): finishing a debited transfer, placing a held order,
# settling a confirmed trade, recording a payment request. The points stay in flight
# meanwhile; the first retry comes soon, later ones back off so a long outage costs few
# attempts.
process_retry_delay_ms_min = 200
process_retry_delay_ms_max = 10_000

# How long shutdown waits for process steps under way (after gRPC stopped taking calls)
# before it cancels them; a cancelled one is finished by recovery at the next start.
shutdown_processes_ms_max = 5_000

assert process_retry_delay_ms_min <= process_retry_delay_ms_max

# --- Query server -----------------------------------------------------------------------------

# Items in one page of a List*/history read. A page is held in memory and sent as one message;
# the contract documents this maximum (PAGE_SIZE_TOO_LARGE above it) and the default.
read_page_items_max = 1_000
read_page_items_default = 100

# Longest a read waits for the projections to reach its min_position, whatever its deadline.
# Each waiting read holds an RPC slot and a task; the contract documents 30 s.
read_wait_ms_max = 30_000

# Events the query server projects in one read-store transaction (one feed batch). The batch's
# rows are held in memory and written while the read store's writer is busy; a larger batch
# means fewer commits (fsyncs) per event during catch-up and longer pauses for the rebuild switch.
projection_batch_events_max = feed_batch_events_max

# Feed messages the query server reads ahead while it writes the previous batch. Whatever has
# arrived is projected together in one read-store transaction (at most
# projection_batch_events_max events), so under load the commits per event drop instead of
# the lag growing. Costs up to this many messages (each at most feed_batch_events_max events)
# in memory.
feed_messages_ahead_max = 4

# Reconnect delays of the query server's EventFeed subscription: doubled after each failure
# from the first to the cap, reset once a message arrives. A lower cap reconnects sooner after
# an outage at the cost of more attempts against a command server that is down.
feed_reconnect_ms_min = 100
feed_reconnect_ms_max = 5_000

# Notifications one WatchNotifications stream reads from the read store at a time: its whole
# buffer. A stream that stops reading holds at most this many rows (HTTP/2 flow control holds
# the writer back), so memory per watcher is bounded whatever its lag.
notification_page_max = 500

# Concurrent WatchNotifications streams. Each costs a task, one page of rows and a read-store
# query per projected batch; past it new streams get RESOURCE_EXHAUSTED (OVERLOADED).
notification_watchers_max = 1_000

# Idle time after which a notification stream gets a heartbeat with the projections' position.
notification_heartbeat_ms = 5_000

# Violations CheckInvariants lists (all are counted); the contract documents 1000 and 100.
invariant_violations_max = 1_000
invariant_violations_default = 100

# Read connections of the SQLite read store. Each runs its queries on its own thread, so reads
# proceed in parallel with each other and with the writer (WAL); each costs a file handle and
# SQLite's page cache.
sqlite_read_connections_max = 4

# How long the generation a rebuild replaced stays readable before its tables are dropped, so
# that reads which picked it just before the switch finish on it. Costs the disk space of a
# second copy of the read models for this long.
retired_generation_keep_ms = 10_000

assert read_page_items_default <= read_page_items_max
assert projection_batch_events_max <= read_batch_events_max
assert feed_reconnect_ms_min <= feed_reconnect_ms_max
assert read_wait_ms_max <= pg_statement_ms_max
assert invariant_violations_default <= invariant_violations_max
assert notification_page_max <= read_page_items_max

# --- Query server: request fields ------------------------------------------------------------

# Bytes of the Position token a read names as its min_position (common.proto: at most 16384).
# A version-1 token is 9 bytes; the room is for later versions. A longer token is
# POSITION_INVALID before it is parsed, so a caller cannot make the server decode a large blob.
position_token_bytes_max = 16_384

# Characters of a page_token (base64url). The tokens the server issues hold a 18-byte header,
# one key of the listing and a 16-byte MAC, far below it; a longer token is CURSOR_INVALID
# before it is decoded or its MAC computed, so a forged one costs no more than this.
page_token_chars_max = 512

# Bytes of a notification cursor (the server issues 46); a longer one is FIELD_TOO_LONG
# before its MAC is computed.
notification_cursor_bytes_max = 256

# Entries of a repeated enum filter: as many as the enum has values (AccountKind 2,
# AccountStatus 3, OrderStatus 5, TradeStatus 5), or room for the enums that will grow
# (MovementKind, NotificationKind). More is FIELD_TOO_LONG. Each entry becomes a parameter of
# the read query and part of the filter digest a page token is bound to.
account_filter_kinds_max = 2
account_filter_statuses_max = 3
order_filter_statuses_max = 5
trade_filter_statuses_max = 5
history_filter_kinds_max = 16
notification_filter_kinds_max = 16

# Accounts one WatchNotifications stream may name; more is FIELD_TOO_LONG. Each is a
# parameter of every read-store query the stream makes (one per projected batch).
notification_filter_accounts_max = 100

# Price levels per side of one GetOrderBook answer, and trades of one ListRecentTrades answer
# (query_service.proto states both, with the defaults a request of 0 gets). Each answer is one
# message built in memory; more is PAGE_SIZE_TOO_LARGE.
book_depth_levels_max = 100
book_depth_levels_default = 10
recent_trades_max = 500
recent_trades_default = 50

assert 1 <= book_depth_levels_default <= book_depth_levels_max <= read_page_items_max
assert 1 <= recent_trades_default <= recent_trades_max <= read_page_items_max

# --- Market ---------------------------------------------------------------------------------

# Resting orders of one account in one market (TOO_MANY_OPEN_ORDERS past it). Each resting
# order costs memory in the market's actor and time in every match that passes over it.
open_orders_per_account_max = 1_000

# Finished orders (filled, cancelled, rejected) a market keeps in memory, newest last: what
# answers ORDER_NOT_OPEN for a recent order and keeps its client_order_id taken. Older
# finished orders leave memory (and the book's snapshot), so a market that has taken millions
# of orders restarts as fast as a new one; a CancelOrder of one of them is answered
# ORDER_NOT_FOUND, and its client_order_id may be used again (docs/market.md).
finished_orders_max = 10_000

# Trades not yet settled or cancelled that one command server drives at once. Each holds an
# entry for its parties and one in the deadline timer until its payment deadline (a few
# hundred bytes), and its seller's points in escrow. Past it, a new order is shed with
# RESOURCE_EXHAUSTED / OVERLOADED until payments catch up.
trades_open_max = 100_000

# The deadline timer's entries, as a multiple of the open trades: an ended trade's entry
# stays until its deadline, so the timer drops the entries of ended trades when it holds
# more than this many per open trade (at least trades_open_max entries are always allowed).
trade_deadlines_per_open_trade_max = 2

# Trades one placement may create; an order that would match more stops matching there
# (the rest of a GTC order rests, of an IOC order is cancelled). Bounds one append's size:
# the market stream, one trade stream per trade and the request record.
trades_per_order_max = 100
assert trades_per_order_max + 2 <= append_unit_streams_max

# Attempts to decide a trade step again after another driver changed the trade first
# (a callback racing the deadline, a redelivery racing its original).
trade_step_attempts_max = 16
# Before deciding a trade step again, a pause drawn at random below this, doubling from
# conflict_pause_ms_min with each attempt: drivers that collided (and the units an actor had
# queued behind the loser's) do not all come back at the same instant.
conflict_pause_ms_min = 1
conflict_pause_ms_max = 50

# --- Markets file (command server) ----------------------------------------------------------

# Markets one markets file may configure. Each is an actor holding its order book in memory
# for the life of the server, and is recovered (its snapshot read, its open trades resumed) at
# every start.
markets_max = 64

# Time a buyer has to pay after a match (a market's payment_window_ms): the default, and the
# longest a file may set. Until the window ends an unpaid trade holds the seller's points in
# escrow and a deadline entry in memory, so a longer window keeps both longer.
payment_window_ms_default = 15 * 60 * 1000
payment_window_ms_max = 7 * 24 * 3600 * 1000

# Highest limit price, in minor units per point: a market's max_price_minor when the file does
# not set it, and the most a file may set. An order's worst amount (price times quantity plus
# fees) must still fit in int64; the order book refuses one that would not.
market_price_minor_max_default = 1_000_000
price_minor_max = 10**12

# The most a market's fixed buyer or seller fee may be, in minor units; like prices, it is
# added into amounts that must fit in int64.
fee_fixed_minor_max = 10**12

assert 1 <= payment_window_ms_default <= payment_window_ms_max
assert 1 <= market_price_minor_max_default <= price_minor_max
assert price_minor_max < 2**63
assert fee_fixed_minor_max < 2**63

# --- Payment providers file (command server) --------------------------------------------------

# Providers one providers file may configure. Each costs a gRPC channel to its gateway and
# its secrets in memory.
providers_max = 64

# Longest CreatePayment call to one provider (its request_timeout_ms): the default, and the
# most a file may set; it is the call's deadline. A longer call holds the trade's payment
# step (and its task) longer while the provider does not answer.
provider_request_timeout_ms_default = 5_000
provider_request_timeout_ms_max = 60_000

# Secrets valid at once for one provider: two while a key rotates (the old one until every
# delivery signed with it has arrived, and the new one). More would widen what a leaked key
# opens, and each is tried on a callback that names no key id.
provider_secrets_max = 2

# Bytes of a shared callback secret, at least (the providers file and the sandbox's secret).
# A shorter HMAC key is guessable offline from one captured callback.
provider_secret_bytes_min = 16

# How far (± seconds) a callback's signed_at may be from the server clock (callback_window_s):
# the default the contract names (PaymentCallback.signed_at), and the most a file may set. A
# wider window lets a captured callback be replayed for longer (deduplication still holds).
callback_window_s_default = 300
callback_window_s_max = 3_600

# Characters of a callback's payment_id and provider_event_id (common.proto: 1-128); longer is
# FIELD_TOO_LONG. Both are stored in the trade events a callback records.
callback_id_chars_max = 128

assert 1 <= provider_request_timeout_ms_default <= provider_request_timeout_ms_max
assert provider_secrets_max >= 1
assert 1 <= callback_window_s_default <= callback_window_s_max

# --- Settings shared by every server --------------------------------------------------------

# Longest graceful shutdown a setting may ask for (POINTEX_SHUTDOWN_GRACE_S): how long calls
# in flight (and the sandbox's queued callbacks) may finish after SIGTERM. A longer grace keeps
# a stopping server, and its port, for longer.
shutdown_grace_s_max = 3_600

# --- Sandbox payment provider (a separate process) ------------------------------------------

# Payments the sandbox holds in memory (about 1 KiB each). Past it, the oldest finished payment
# is forgotten; when none is finished, CreatePayment answers RESOURCE_EXHAUSTED.
sandbox_payments_max = 100_000

# Callbacks waiting for a delivery worker. A payment is queued once, when it settles, so a
# queue as large as the payment table can never overflow.
sandbox_deliveries_queued_max = sandbox_payments_max

# Callbacks in flight at once; each holds one call to the command server, so this also bounds
# the sandbox's settlement rate (workers / callback latency).
sandbox_delivery_workers_max = 16

# Calls made for one callback before the sandbox gives up on it (ABANDONED).
sandbox_delivery_attempts_max = 20

# Pause before the first redelivery; it doubles each time up to the maximum, so a command
# server that is restarting is not hammered.
sandbox_delivery_backoff_ms_min = 100
sandbox_delivery_backoff_ms_max = 5_000

# Longest single callback call; a longer one holds its worker longer.
sandbox_delivery_attempt_ms_max = 5_000

# Longest wait of a SettlePayment with wait_for_delivery and no deadline of its own.
sandbox_settle_wait_ms_max = 60_000

# Longest delay from a payment's creation to its callback a setting may ask for
# (POINTEX_PAYMENT_DELAY_MS). The payment is held in memory meanwhile.
sandbox_payment_delay_ms_max = 86_400_000

assert sandbox_deliveries_queued_max >= sandbox_payments_max
assert sandbox_delivery_workers_max >= 1
assert sandbox_delivery_attempts_max >= 1
assert 1 <= sandbox_delivery_backoff_ms_min <= sandbox_delivery_backoff_ms_max
assert sandbox_delivery_attempt_ms_max <= sandbox_settle_wait_ms_max
