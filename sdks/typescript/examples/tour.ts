/**
 * A tour of the TypeScript SDK: every operation a partner uses, in the order the partner
 * guide shows them, next to the Python tour (examples/tour.py).
 *
 *     node sdks/typescript/dist/examples/tour.js
 *
 * Reads POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET, POINTEX_PARTNER_TOKEN,
 * POINTEX_PARTNER_ID and POINTEX_OPERATOR_TOKEN (the operator funds the program; a partner
 * cannot mint), and POINTEX_PROVIDER_TOKEN and POINTEX_PROVIDER_SECRET for the payment
 * provider's part. docs/partners.md quotes this file, and the test suite runs it against
 * real servers, so the guide's snippets are code that works.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  AccountKind,
  createPointexClient,
  MovementKind,
  notifications,
  NotificationKind,
  OrderSide,
  type PointexClient,
  pointexError,
  requestId,
  signedCallback,
  targetsFromEnv,
  TimeInForce,
  type TlsOptions,
  tlsFromFiles,
  type Trade,
  TradeStatus,
  withRetry,
} from "@pointex/client";

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const partnerId = env("POINTEX_PARTNER_ID");
const run = randomUUID().slice(0, 8);
const shop = `${partnerId}:shop-${run}`;
const alice = `${partnerId}:alice-${run}`;
const bob = `${partnerId}:bob-${run}`;

/** Return the partner's client; show the options a production client sets. */
function connect(): PointexClient {
  // -- snippet: connect --
  const client = createPointexClient({
    commandTarget: "127.0.0.1:50051", // the command server
    queryTarget: "127.0.0.1:50052", // the query server
    token: env("POINTEX_PARTNER_TOKEN"), // sent as `authorization: Bearer ...`
    commandTimeoutMs: 10_000, // per attempt; withRetry bounds the attempts
    queryTimeoutMs: 10_000, // including the wait for minPosition
  });
  // -- end of snippet --
  client.close();
  let tls: TlsOptions | undefined;
  // -- snippet: tls --
  const ca = process.env["POINTEX_TLS_CA"];
  if (ca !== undefined) {
    // TLS; with a certificate and key, mutual TLS.
    const [cert, key] = [process.env["POINTEX_TLS_CERT"], process.env["POINTEX_TLS_KEY"]];
    tls = tlsFromFiles({ ca, cert, key });
  }
  // -- end of snippet --
  return createPointexClient({ ...targetsFromEnv(), token: env("POINTEX_PARTNER_TOKEN"), tls });
}

/** The operator opens the shop for the partner and funds it (only an operator mints). */
async function fund(operator: PointexClient): Promise<void> {
  // -- snippet: fund --
  await operator.commands.openAccount({
    requestId: requestId(),
    accountId: shop,
    kind: AccountKind.MERCHANT,
    ownerPartnerId: partnerId,
  });
  await operator.commands.mintPoints({
    requestId: requestId(),
    merchantAccountId: shop,
    amountPoints: 100_000n, // int64 fields are bigint: whole points, never floats
    memo: "programme funding 2026-Q4",
  });
  // -- end of snippet --
}

/** Open members, then issue, redeem and transfer points. */
async function movements(client: PointexClient): Promise<void> {
  // -- snippet: accounts --
  await client.commands.openAccount({
    requestId: requestId(), // a UUID; send it again to retry this very command
    accountId: alice,
    kind: AccountKind.MEMBER,
    displayName: "Alice",
  });
  await client.commands.openAccount({
    requestId: requestId(),
    accountId: bob,
    kind: AccountKind.MEMBER,
    displayName: "Bob",
  });
  // -- end of snippet --
  // -- snippet: movements --
  const issued = await client.commands.issuePoints({
    requestId: requestId(),
    merchantAccountId: shop,
    memberAccountId: alice,
    amountPoints: 500n,
    reason: "purchase #8812",
  });
  console.log(`transfer ${issued.transferId}, shop has ${issued.merchantAvailablePoints} left`);
  await client.commands.redeemPoints({
    requestId: requestId(),
    memberAccountId: alice,
    merchantAccountId: shop,
    amountPoints: 120n,
    reason: "coffee",
  });
  await client.commands.transferPoints({
    requestId: requestId(),
    fromAccountId: alice,
    toAccountId: bob,
    amountPoints: 80n,
    memo: "happy birthday",
  });
  // -- end of snippet --
  // -- snippet: idempotency --
  const referral = {
    requestId: `referral-${run}`, // your own key: a retry, even from a new process, is known
    merchantAccountId: shop,
    memberAccountId: bob,
    amountPoints: 25n,
    reason: "referral",
  };
  const send = () => client.commands.issuePoints(referral); // the same request each time
  const first = await withRetry(send, { requestId: referral.requestId });
  const again = await withRetry(send, { requestId: referral.requestId });
  assert.deepEqual(again.position, first.position); // the same command, applied once
  // -- end of snippet --
}

/** Read back with read-your-writes, page through history, and handle refusals. */
async function reads(client: PointexClient): Promise<void> {
  // -- snippet: read-your-writes --
  const { account } = await client.queries.getAccount({
    accountId: alice,
    minPosition: client.lastPosition(), // waits for this client's writes
  });
  assert.equal(account?.availablePoints, 500n - 120n - 80n);
  // -- end of snippet --
  // -- snippet: paging --
  let pageToken = "";
  do {
    const page = await client.queries.getAccountHistory({
      accountId: alice,
      newestFirst: true,
      pageSize: 50,
      pageToken,
    });
    for (const movement of page.movements) {
      const kind = MovementKind[movement.kind];
      console.log(`${kind} ${movement.availableDeltaPoints} ${movement.memo}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  // -- end of snippet --
  // -- snippet: errors --
  try {
    await client.commands.transferPoints({
      requestId: requestId(),
      fromAccountId: bob,
      toAccountId: alice,
      amountPoints: 1_000_000n,
    });
  } catch (thrown) {
    const refused = pointexError(thrown); // code, ErrorInfo reason and metadata, retry delay
    if (refused.family !== "Refused") throw refused; // FAILED_PRECONDITION: a rule said no
    console.log(refused.codeName, refused.reason, refused.metadata);
  }
  try {
    await client.queries.getAccount({ accountId: `${partnerId}:nobody-${run}` });
  } catch (thrown) {
    console.log(pointexError(thrown).reason); // ACCOUNT_NOT_FOUND
  }
  // -- end of snippet --
}

/** Take part of an issue back (a return), once; give a redemption back (a refund). */
async function reversals(client: PointexClient): Promise<void> {
  // -- snippet: reversals --
  const sale = await client.commands.issuePoints({
    requestId: requestId(),
    merchantAccountId: shop,
    memberAccountId: alice,
    amountPoints: 200n,
    reason: "purchase #8813",
  });
  const returned = await client.commands.reverseIssue({
    requestId: `return-8813-${run}`, // your own key, from your record of the return
    transferId: sale.transferId, // what issuePoints replied
    amountPoints: 50n, // 1 up to the issue's amount
    reason: "purchase #8813: one item returned",
  });
  const left = returned.memberAvailablePoints;
  console.log(`reversal ${returned.reversalTransferId}, alice has ${left}`);
  try {
    await client.commands.reverseIssue({
      requestId: requestId(),
      transferId: sale.transferId,
      amountPoints: 50n,
      reason: "the same return, booked twice",
    });
  } catch (thrown) {
    const refused = pointexError(thrown);
    if (refused.reason !== "TRANSFER_ALREADY_REVERSED") throw refused; // the caller decides
    console.log(`reversed already by ${refused.metadata["reversal_transfer_id"]}`);
  }
  const ticket = await client.commands.redeemPoints({
    requestId: requestId(),
    memberAccountId: alice,
    merchantAccountId: shop,
    amountPoints: 30n,
    reason: "cinema ticket",
  });
  await client.commands.reverseRedeem({
    requestId: `refund-${run}`,
    transferId: ticket.transferId,
    amountPoints: 30n,
    reason: "screening cancelled",
  });
  // -- end of snippet --
  const kept = 500n - 120n - 80n + 200n - 50n; // reversed once; the refund came back in full
  assert.equal(left, kept);
  const { account } = await client.queries.getAccount({
    accountId: alice,
    minPosition: client.lastPosition(),
  });
  assert.equal(account?.availablePoints, kept);
}

/** Quote the program's fee on a transfer, then transfer holding the program to it. */
async function fees(client: PointexClient): Promise<void> {
  // -- snippet: fees --
  const quoted = await client.queries.quoteTransfer({
    fromAccountId: bob,
    amountPoints: 20n,
    minPosition: client.lastPosition(), // waits for this client's writes
  });
  const fee = quoted.quote?.feePoints ?? 0n;
  console.log(`bob gives 20 and pays ${fee} more: ${quoted.totalPoints} in all`);
  try {
    const sent = await client.commands.transferPoints({
      requestId: requestId(),
      fromAccountId: bob,
      toAccountId: alice,
      amountPoints: 20n,
      memo: "thanks",
      feeQuote: quoted.quote, // exactly this fee, or refused with FEE_SCHEDULE_CHANGED
    });
    console.log(`fee paid ${sent.feePoints}, bob has ${sent.fromAvailablePoints} left`);
  } catch (thrown) {
    const refused = pointexError(thrown);
    if (refused.reason !== "FEE_SCHEDULE_CHANGED") throw refused; // the caller decides
    console.log(`the fee is now ${refused.metadata["fee_points"]}`); // quote again, ask again
  }
  // -- end of snippet --
  assert.equal(quoted.totalPoints, 20n + fee);
}

/** Award several members in one stream; each command succeeds or fails on its own. */
async function bulk(client: PointexClient): Promise<void> {
  // -- snippet: bulk --
  const awards = [alice, bob, `${partnerId}:nobody-${run}`].map((member, row) => ({
    command: {
      case: "issuePoints" as const,
      value: {
        requestId: `award-${run}-${row}`, // the same row, the same id
        merchantAccountId: shop,
        memberAccountId: member,
        amountPoints: 5n,
        reason: "bulk welcome",
      },
    },
  }));
  async function* batches() {
    yield { commands: awards }; // at most 1,000 commands a message
  }
  for await (const reply of client.commands.executeBulk(batches())) {
    for (const result of reply.results) {
      if (result.outcome.case === "error") {
        console.log(`row ${result.index + 1}: ${result.outcome.value.reason}`);
      }
    }
  }
  // -- end of snippet --
}

/** Follow alice's notifications from the beginning, and keep the cursor to resume from. */
async function watch(client: PointexClient): Promise<void> {
  // -- snippet: notifications --
  await client.commands.issuePoints({
    requestId: requestId(),
    merchantAccountId: shop,
    memberAccountId: alice,
    amountPoints: 10n,
    reason: "streak bonus",
  });
  let cursor: Uint8Array = new Uint8Array();
  for await (const note of notifications(client.queries, {
    accountIds: [alice],
    fromBeginning: true,
  })) {
    cursor = note.cursor; // save it: passing it back as `cursor` resumes after this one
    if (note.details.case !== "pointsMoved") continue;
    if (note.kind === NotificationKind.POINTS_RECEIVED) {
      console.log(`alice received ${note.details.value.amountPoints}`);
    }
    if (note.details.value.memo === "streak bonus") break;
  }
  // -- end of snippet --
  assert.ok(cursor.length > 0);
}

/** Alice sells, bob buys; the provider is paid; bob follows the trade until it ended. */
async function market(client: PointexClient): Promise<Trade> {
  await client.commands.placeOrder({
    requestId: requestId(),
    accountId: alice,
    marketId: "PTS-CNY",
    side: OrderSide.SELL,
    quantityPoints: 40n,
    limitPriceMinor: 125n,
    timeInForce: TimeInForce.GTC,
  });
  // -- snippet: buy --
  const placed = await client.commands.placeOrder({
    requestId: requestId(),
    accountId: bob,
    marketId: "PTS-CNY",
    side: OrderSide.BUY,
    quantityPoints: 40n,
    limitPriceMinor: 130n, // minor units per point: 1.30 CNY at most
    timeInForce: TimeInForce.IOC,
  });
  const pending = new Set(placed.trades.map((trade) => trade.tradeId));
  // -- end of snippet --
  assert.equal(placed.trades.length, 1);
  // -- snippet: follow --
  let ended: Trade | undefined; // the trade once it settled or was cancelled
  const endings = new Set([NotificationKind.TRADE_SETTLED, NotificationKind.TRADE_CANCELLED]);
  const bobs = { accountIds: [bob], fromBeginning: true };
  for await (const note of notifications(client.queries, bobs)) {
    if (note.details.case === "paymentRequired") {
      console.log(`pay ${note.details.value.tradeId} at ${note.details.value.checkoutUrl}`);
    } else if (endings.has(note.kind) && note.details.case === "trade") {
      ended = note.details.value;
      pending.delete(ended.tradeId);
      console.log(`trade ${ended.tradeId}: ${TradeStatus[ended.status]}`);
    }
    if (pending.size === 0) {
      const { account } = await client.queries.getAccount({
        accountId: bob,
        minPosition: note.position, // the state right after the trade ended
      });
      console.log(`bob has ${account?.availablePoints} points`);
      break;
    }
  }
  // -- end of snippet --
  assert.ok(ended !== undefined);
  return ended;
}

/** The payment provider signs a confirmation of the paid trade (a redelivery here). */
async function callback(trade: Trade): Promise<void> {
  const token = env("POINTEX_PROVIDER_TOKEN"); // a payment provider's credential
  const provider = createPointexClient({ ...targetsFromEnv(), token });
  try {
    // -- snippet: callback --
    const signed = signedCallback(
      {
        providerId: trade.providerId,
        paymentId: trade.paymentId,
        tradeId: trade.tradeId,
        confirmed: true,
        amountMinor: trade.amountDueMinor,
        currency: trade.currency,
        providerEventId: `evt-${trade.tradeId}`,
        signedAtS: BigInt(Date.now()) / 1000n, // sign every redelivery afresh
      },
      env("POINTEX_PROVIDER_SECRET"),
    );
    const reply = await provider.commands.confirmPayment({
      requestId: signed.providerEventId,
      callback: signed,
    });
    console.log(`callback: ${TradeStatus[reply.tradeStatus]}`);
    // -- end of snippet --
  } finally {
    provider.close();
  }
}

async function main(): Promise<void> {
  const token = env("POINTEX_OPERATOR_TOKEN");
  const operator = createPointexClient({ ...targetsFromEnv(), token });
  const client = connect();
  try {
    await fund(operator);
    await movements(client);
    await reads(client);
    await reversals(client);
    await fees(client);
    await bulk(client);
    await watch(client);
    const trade = await market(client);
    await callback(trade);
  } finally {
    operator.close();
    client.close();
  }
  console.log("tour complete");
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
