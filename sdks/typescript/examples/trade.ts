/**
 * A trade from start to end with the TypeScript SDK, against running servers.
 *
 *     node sdks/typescript/dist/examples/trade.js
 *
 * Reads POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET, POINTEX_OPERATOR_TOKEN,
 * POINTEX_PARTNER_TOKEN and POINTEX_PARTNER_ID, as the Python examples do. The operator
 * opens and funds a merchant for the partner; the partner opens a seller and a buyer,
 * issues points to the seller, who gives some to the buyer; the seller places a SELL
 * order and the buyer a BUY that matches it. The payment provider (the sandbox under
 * `make run` and in the tests) takes the payment and calls back by itself; the buyer
 * follows its notifications until the trade is settled, then reads its account as of that
 * notification's position.
 */

import { randomUUID } from "node:crypto";
import {
  AccountKind,
  createPointexClient,
  notifications,
  NotificationKind,
  OrderSide,
  type PointexClient,
  pointexError,
  requestId,
  targetsFromEnv,
  TimeInForce,
  TradeStatus,
  withRetry,
} from "@pointex/client";

const MARKET = "PTS-CNY";
const ISSUED_POINTS = 1_000n;
const GIFT_POINTS = 50n;
const TRADED_POINTS = 300n;
const PRICE_MINOR = 125n; // 1.25 CNY a point, in fen
const ENDED = new Set([NotificationKind.TRADE_SETTLED, NotificationKind.TRADE_CANCELLED]);

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
const seller = `${partnerId}:seller-${run}`;
const buyer = `${partnerId}:buyer-${run}`;

/** The operator opens the partner's merchant account and funds it (only an operator mints). */
async function fund(operator: PointexClient): Promise<void> {
  const open = {
    requestId: requestId(),
    accountId: shop,
    kind: AccountKind.MERCHANT,
    ownerPartnerId: partnerId,
  };
  await withRetry(() => operator.commands.openAccount(open), { requestId: open.requestId });
  const mint = { requestId: requestId(), merchantAccountId: shop, amountPoints: ISSUED_POINTS };
  await withRetry(() => operator.commands.mintPoints(mint), { requestId: mint.requestId });
}

/** The partner opens both members, rewards the seller, and the seller gives to the buyer. */
async function prepare(partner: PointexClient): Promise<void> {
  for (const accountId of [seller, buyer]) {
    const open = { requestId: requestId(), accountId, kind: AccountKind.MEMBER };
    await withRetry(() => partner.commands.openAccount(open), { requestId: open.requestId });
  }
  const issue = {
    requestId: requestId(),
    merchantAccountId: shop,
    memberAccountId: seller,
    amountPoints: ISSUED_POINTS,
    reason: "welcome",
  };
  await withRetry(() => partner.commands.issuePoints(issue), { requestId: issue.requestId });
  const gift = {
    requestId: requestId(),
    fromAccountId: seller,
    toAccountId: buyer,
    amountPoints: GIFT_POINTS,
    memo: "a gift",
  };
  await withRetry(() => partner.commands.transferPoints(gift), { requestId: gift.requestId });
}

/** A SELL of more points than the seller has is refused with a reason, and nothing moves. */
async function oversell(partner: PointexClient): Promise<void> {
  const refused = await partner.commands
    .placeOrder({
      requestId: requestId(),
      accountId: seller,
      marketId: MARKET,
      side: OrderSide.SELL,
      quantityPoints: ISSUED_POINTS * 10n,
      limitPriceMinor: PRICE_MINOR,
      timeInForce: TimeInForce.GTC,
    })
    .then(
      () => undefined,
      (thrown: unknown) => pointexError(thrown),
    );
  if (refused === undefined) {
    throw new Error("an oversized SELL order was accepted");
  }
  if (refused.family !== "Refused") {
    throw refused;
  }
  console.log(`sell refused: ${refused.reason} (${refused.codeName})`);
}

/** Place the SELL, then the BUY that matches it; return the ids of the trades to pay. */
async function trade(partner: PointexClient): Promise<Set<string>> {
  const sell = {
    requestId: requestId(),
    accountId: seller,
    marketId: MARKET,
    side: OrderSide.SELL,
    quantityPoints: TRADED_POINTS,
    limitPriceMinor: PRICE_MINOR,
    timeInForce: TimeInForce.GTC,
  };
  await withRetry(() => partner.commands.placeOrder(sell), { requestId: sell.requestId });
  const buy = {
    ...sell,
    requestId: requestId(),
    accountId: buyer,
    side: OrderSide.BUY,
    timeInForce: TimeInForce.IOC,
  };
  const placed = await withRetry(() => partner.commands.placeOrder(buy), {
    requestId: buy.requestId,
  });
  const pending = new Set(placed.trades.map((matched) => matched.tradeId));
  if (pending.size === 0) {
    throw new Error("the BUY order matched nothing");
  }
  console.log(`order ${placed.order?.orderId}: ${pending.size} trade(s) to pay`);
  return pending;
}

/** Follow the buyer's notifications until every trade has ended; return the last position. */
async function follow(partner: PointexClient, pending: Set<string>): Promise<string> {
  let settled = "";
  for await (const note of notifications(partner.queries, {
    accountIds: [buyer],
    fromBeginning: true,
  })) {
    if (note.details.case === "paymentRequired") {
      const payment = note.details.value;
      console.log(`pay ${payment.tradeId} at ${payment.checkoutUrl}`);
    } else if (ENDED.has(note.kind) && note.details.case === "trade") {
      const ended = note.details.value;
      if (pending.delete(ended.tradeId)) {
        console.log(`trade ${ended.tradeId}: ${TradeStatus[ended.status]}`);
        settled = ended.status === TradeStatus.SETTLED ? ended.tradeId : settled;
      }
    }
    if (pending.size === 0) {
      const { account } = await partner.queries.getAccount({
        accountId: buyer,
        minPosition: note.position, // the state right after the trade ended
      });
      console.log(`${buyer} has ${account?.availablePoints} points`);
      break;
    }
  }
  return settled;
}

async function main(): Promise<void> {
  const targets = targetsFromEnv();
  const operator = createPointexClient({ ...targets, token: env("POINTEX_OPERATOR_TOKEN") });
  const partner = createPointexClient({ ...targets, token: env("POINTEX_PARTNER_TOKEN") });
  try {
    await fund(operator);
    await prepare(partner);
    await oversell(partner);
    const pending = await trade(partner);
    const settled = await follow(partner, pending);
    if (settled === "") {
      throw new Error("the trade did not settle");
    }
    console.log("trade complete");
  } finally {
    operator.close();
    partner.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
