/**
 * Following notifications live, resuming from the last cursor when the stream breaks.
 *
 * @module
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import type { Position } from "./gen/pointex/v1/common_pb.js";
import type {
  Notification,
  NotificationKind,
  QueryService,
} from "./gen/pointex/v1/query_service_pb.js";
import { type PointexError, pointexError } from "./errors.js";
import { type RetryPolicy, retryDelayMsAfter } from "./retry.js";

/**
 * How a watch retries: more attempts than a command and no short total, so that a query
 * server restart of a few seconds does not end a long-lived watch.
 */
export const WATCH_RETRY_POLICY: RetryPolicy = Object.freeze({
  attemptsMax: 30,
  backoffMsMin: 100,
  backoffMsMax: 2_000,
  serverDelayMsMax: 10_000,
  totalMsMax: 120_000,
});

/** What to follow, and from where. */
export interface NotificationsOptions {
  /** Only these accounts (yours); empty: every account you may see. */
  readonly accountIds?: readonly string[];
  /** Only these kinds; empty: every kind. */
  readonly kinds?: readonly NotificationKind[];
  /** Resume right after this cursor (a notification's `cursor`, saved earlier). */
  readonly cursor?: Uint8Array;
  /** Without a cursor: start from the first notification (true) or from now (false). */
  readonly fromBeginning?: boolean;
  /** Start once the query server has applied this position. */
  readonly minPosition?: Position;
  /** Ends the watch when aborted: the loop over it then ends without an error. */
  readonly signal?: AbortSignal;
  /** How reconnecting retries (default `WATCH_RETRY_POLICY`). */
  readonly policy?: RetryPolicy;
  /** Called before each reconnection (to log it, for example). */
  readonly onRetry?: (error: PointexError, delayMs: number) => void;
}

/**
 * Yield notifications as they happen, until the loop that reads them stops.
 *
 * Heartbeats are skipped. When the stream breaks (the query server restarts), it
 * reconnects with the cursor of the last notification it yielded: none is lost and none
 * repeated. Save `notification.cursor` to resume in a later process.
 *
 * @throws PointexError when the watch is refused, or reconnecting keeps failing past the
 *   policy.
 */
export async function* notifications(
  queries: Client<typeof QueryService>,
  options: NotificationsOptions = {},
): AsyncGenerator<Notification, void, undefined> {
  const policy = options.policy ?? WATCH_RETRY_POLICY;
  let cursor = options.cursor ?? new Uint8Array();
  let failures = 0;
  let failingSinceMs = 0;
  const aborted = (): boolean => options.signal?.aborted === true;
  while (!aborted()) {
    const request = {
      minPosition: options.minPosition,
      cursor,
      fromBeginning: (options.fromBeginning ?? false) && cursor.length === 0,
      accountIds: [...(options.accountIds ?? [])],
      kinds: [...(options.kinds ?? [])],
    };
    try {
      // A watch has no deadline: timeoutMs 0 lifts the client's default one.
      const stream = queries.watchNotifications(request, {
        timeoutMs: 0,
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      });
      for await (const response of stream) {
        failures = 0;
        if (response.message.case === "notification") {
          cursor = response.message.value.cursor;
          yield response.message.value;
        }
      }
    } catch (thrown) {
      if (aborted()) {
        return; // The caller ended the watch.
      }
      const error = pointexError(thrown);
      failingSinceMs = failures === 0 ? Date.now() : failingSinceMs;
      failures += 1;
      const delayMs = retryDelayMsAfter(policy, error, failures, Date.now() - failingSinceMs);
      if (delayMs === undefined) {
        throw error;
      }
      options.onRetry?.(error, delayMs);
      // An abort during the wait ends the watch at the top of the loop.
      await sleep(delayMs, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}
