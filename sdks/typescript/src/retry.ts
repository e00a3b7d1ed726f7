/**
 * Request ids, and retrying a command with the same one while its outcome is unclear.
 *
 * Retrying a command is safe because every command carries a request id that the server
 * keeps with its result: a retry with the same id of a command that was applied returns the
 * original reply and changes nothing; a retry of one that was not applied runs it now. So a
 * call that ends without a clear answer (UNAVAILABLE, DEADLINE_EXCEEDED, or the library's
 * own INTERNAL or UNKNOWN when a connection is cut mid-call), one that lost a race (ABORTED)
 * and one the server asked to come back later (RESOURCE_EXHAUSTED with a RetryInfo delay)
 * are tried again with the same id, within a bounded number of attempts and a total time.
 * This is the Python SDK's policy, with the same defaults.
 *
 * @module
 */

import { randomInt, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { type PointexError, pointexError } from "./errors.js";

/** Bounded attempts with jittered exponential backoff and a total time limit. */
export interface RetryPolicy {
  /** Attempts in all, the first included (1 = never retry). */
  readonly attemptsMax: number;
  /** The wait before the first retry, doubled for each later one. */
  readonly backoffMsMin: number;
  /** The longest wait between two attempts. */
  readonly backoffMsMax: number;
  /** A server's RetryInfo delay is honoured up to this. */
  readonly serverDelayMsMax: number;
  /** No retry starts once this long has passed since the first attempt. */
  readonly totalMsMax: number;
}

/** The policy of every command unless told otherwise. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attemptsMax: 6,
  backoffMsMin: 100,
  backoffMsMax: 3_200,
  serverDelayMsMax: 10_000,
  totalMsMax: 30_000,
});

// Past this many doublings the delay is capped anyway; keeps the shift small.
const DOUBLINGS_MAX = 16;

/** Return a fresh request id (a random UUID) to send with a command and with its retries. */
export function requestId(): string {
  return randomUUID();
}

/** Return whether trying again with the same request id may succeed. */
export function retryable(error: PointexError): boolean {
  switch (error.family) {
    case "Unavailable":
      // CANCELLED is the caller's own doing (or the process going away): never retried.
      return error.code !== Code.Canceled;
    case "Conflict":
      return error.code === Code.Aborted;
    case "InternalError":
      // A Pointex server's INTERNAL always carries ErrorInfo (INTERNAL_ERROR, a bug, not
      // retried). Without it, INTERNAL or UNKNOWN comes from the library, typically a
      // connection cut in the middle of a call: an unclear outcome like UNAVAILABLE.
      return error.reason === "";
    case "Overloaded":
      // Without RetryInfo, RESOURCE_EXHAUSTED comes from the library (a message over the
      // size limit): the same request would fail the same way.
      return error.retryDelayMs !== undefined;
    default:
      return false;
  }
}

/**
 * Return how long to wait before trying again after failed attempt `attempt` (1-based),
 * or undefined to give up: the error is not retryable, the attempts are used up, or the
 * wait would end past the total time.
 */
export function retryDelayMsAfter(
  policy: RetryPolicy,
  error: PointexError,
  attempt: number,
  elapsedMs: number,
): number | undefined {
  if (!retryable(error) || attempt >= policy.attemptsMax) {
    return undefined;
  }
  const doublings = Math.min(attempt - 1, DOUBLINGS_MAX);
  const backoffMs = Math.min(policy.backoffMsMax, policy.backoffMsMin * 2 ** doublings);
  // Jitter spreads the retries of many clients that failed together (a server restart), so
  // they do not all come back in the same instant.
  const halfMs = Math.floor(backoffMs / 2);
  let delayMs = halfMs + randomInt(0, halfMs + 1);
  if (error.retryDelayMs !== undefined) {
    delayMs = Math.max(delayMs, Math.min(error.retryDelayMs, policy.serverDelayMsMax));
  }
  if (elapsedMs + delayMs > policy.totalMsMax) {
    return undefined;
  }
  return delayMs;
}

/** How `withRetry` retries. */
export interface RetryOptions {
  /** The command's request id, for the error thrown when retries run out. */
  readonly requestId?: string;
  /** Overrides of `DEFAULT_RETRY_POLICY`. */
  readonly policy?: Partial<RetryPolicy>;
  /** Stops waiting, and retrying, when aborted (the last failure is thrown). */
  readonly signal?: AbortSignal;
  /** Called before each retry (to log it, for example). */
  readonly onRetry?: (error: PointexError, delayMs: number) => void;
}

/**
 * Run `call` and retry it while the failure leaves the outcome unclear.
 *
 * `call` must send the same request each time, request id included: build the request
 * once, outside it. Throws the last failure as a `PointexError`; its `outcomeUnknown` is
 * true when the command may or may not have been applied (send it again later with the
 * same request id to find out).
 *
 * @example
 * const request = { requestId: requestId(), merchantAccountId: shop, amountPoints: 500n };
 * const send = () => commands.mintPoints(request);
 * const reply = await withRetry(send, { requestId: request.requestId });
 */
export async function withRetry<T>(
  call: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.policy };
  const { attemptsMax, backoffMsMin, backoffMsMax } = policy;
  if (attemptsMax < 1 || backoffMsMin <= 0 || backoffMsMin > backoffMsMax) {
    throw new RangeError("a retry policy needs attemptsMax >= 1, 0 < backoffMsMin <= backoffMsMax");
  }
  const startedMs = Date.now();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call(attempt);
    } catch (thrown) {
      const error = pointexError(thrown, options.requestId ?? "");
      const delayMs = retryDelayMsAfter(policy, error, attempt, Date.now() - startedMs);
      if (delayMs === undefined || options.signal?.aborted === true) {
        throw error;
      }
      options.onRetry?.(error, delayMs);
      await sleep(delayMs, undefined, { signal: options.signal }).catch(() => {
        throw error; // Aborted while waiting: the last failure is the answer.
      });
    }
  }
}
