/**
 * The hand-written layer of the TypeScript SDK, without servers: positions, error details,
 * the retry policy, the reasons table and callback signatures.
 *
 *     node --test sdks/typescript/dist/test/units.test.js
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import {
  canonicalString,
  Code,
  ConnectError,
  decodeGlobal,
  encodeGlobal,
  InvalidPositionError,
  later,
  MoneySchema,
  NotificationSchema,
  notifications,
  type QueryService,
  type WatchNotificationsRequest,
  WatchNotificationsResponseSchema,
  PaymentCallbackSchema,
  PaymentOutcome,
  pointexError,
  positionMessage,
  PositionSchema,
  REASONS,
  retryable,
  signCallback,
  withRetry,
} from "@pointex/client";

const LEN = WireType.LengthDelimited;

function errorInfoBytes(reason: string, metadata: Record<string, string>): Uint8Array {
  const writer = new BinaryWriter();
  writer.tag(1, LEN).string(reason);
  writer.tag(2, LEN).string("pointex.v1");
  for (const [key, value] of Object.entries(metadata)) {
    writer.tag(3, LEN).fork().tag(1, LEN).string(key).tag(2, LEN).string(value).join();
  }
  writer.tag(99, WireType.Varint).int32(7); // An unknown field, skipped as any reader does.
  return writer.finish();
}

function retryInfoBytes(seconds: bigint, nanos: number): Uint8Array {
  const writer = new BinaryWriter();
  writer.tag(1, LEN).fork();
  writer.tag(1, WireType.Varint).int64(seconds).tag(2, WireType.Varint).int32(nanos);
  return writer.join().finish();
}

function failure(code: Code, reason = "", retry?: Uint8Array): ConnectError {
  const error = new ConnectError("refused", code);
  if (reason !== "") {
    const value = errorInfoBytes(reason, { account_id: "acme:a", required_points: "9" });
    error.details.push({ type: "google.rpc.ErrorInfo", value });
  }
  if (retry !== undefined) {
    error.details.push({ type: "google.rpc.RetryInfo", value: retry });
  }
  return error;
}

// Waits of a few milliseconds, so that retries are tested without slowing the suite.
const FAST = { backoffMsMin: 1, backoffMsMax: 2, serverDelayMsMax: 5 };

describe("positions", () => {
  it("round-trips a global position through a 9-byte big-endian token", () => {
    const token = encodeGlobal(258n);
    assert.deepEqual([...token], [1, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert.equal(decodeGlobal(token), 258n);
    assert.equal(decodeGlobal(encodeGlobal(2n ** 64n - 1n)), 2n ** 64n - 1n);
  });

  it("reads an empty token as the beginning and refuses unknown formats", () => {
    assert.equal(decodeGlobal(new Uint8Array()), 0n);
    assert.equal(positionMessage(0n).token.length, 0);
    assert.throws(() => decodeGlobal(new Uint8Array([2, 0])), InvalidPositionError);
    assert.throws(() => decodeGlobal(new Uint8Array([1, 0])), InvalidPositionError);
    assert.throws(() => encodeGlobal(-1n), RangeError);
  });

  it("keeps the further of two positions, or the newer when they cannot be compared", () => {
    const five = positionMessage(5n);
    const nine = positionMessage(9n);
    assert.equal(later(undefined, five), five);
    assert.equal(later(nine, five), nine);
    assert.equal(later(five, nine), nine);
    const vector = create(PositionSchema, { token: new Uint8Array([2, 1, 2, 3]) });
    assert.equal(later(nine, vector), vector);
  });
});

describe("errors", () => {
  it("decodes the ErrorInfo reason, domain and metadata of a refusal", () => {
    const error = pointexError(failure(Code.FailedPrecondition, "INSUFFICIENT_POINTS"), "r-1");
    assert.equal(error.codeName, "FAILED_PRECONDITION");
    assert.equal(error.family, "Refused");
    assert.equal(error.reason, "INSUFFICIENT_POINTS");
    assert.equal(error.domain, "pointex.v1");
    assert.deepEqual(error.metadata, { account_id: "acme:a", required_points: "9" });
    assert.equal(error.retryDelayMs, undefined);
    assert.equal(error.described?.code, "FAILED_PRECONDITION");
    assert.equal(error.unreachable, false);
    assert.equal(error.outcomeUnknown, false);
    assert.equal(
      error.message,
      "FAILED_PRECONDITION INSUFFICIENT_POINTS: refused " +
        "[account_id=acme:a, required_points=9] (request id r-1)",
    );
  });

  it("decodes a RetryInfo delay into whole milliseconds", () => {
    const shed = failure(Code.ResourceExhausted, "MAILBOX_FULL", retryInfoBytes(1n, 500_000_000));
    assert.equal(pointexError(shed).retryDelayMs, 1500);
  });

  it("tells a library failure (no ErrorInfo) from a server's refusal", () => {
    const error = pointexError(new ConnectError("connect ECONNREFUSED", Code.Unavailable), "r-2");
    assert.equal(error.reason, "");
    assert.equal(error.unreachable, true);
    assert.equal(error.outcomeUnknown, true);
    assert.equal(pointexError(new TypeError("a bug")).family, "InternalError");
  });

  it("retries only what may succeed with the same request id", () => {
    assert.equal(retryable(pointexError(failure(Code.Unavailable))), true);
    assert.equal(retryable(pointexError(failure(Code.Aborted, "REQUEST_IN_PROGRESS"))), true);
    const reused = failure(Code.AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert.equal(retryable(pointexError(reused)), false);
    assert.equal(retryable(pointexError(failure(Code.ResourceExhausted))), false);
    assert.equal(retryable(pointexError(failure(Code.Internal, "INTERNAL_ERROR"))), false);
    assert.equal(retryable(pointexError(failure(Code.Internal))), true);
    assert.equal(retryable(pointexError(failure(Code.Canceled))), false);
  });
});

describe("withRetry", () => {
  it("sends the same call again after UNAVAILABLE and returns its answer", async () => {
    const attempts: number[] = [];
    const answer = await withRetry(
      async (attempt) => {
        attempts.push(attempt);
        if (attempt < 3) {
          throw failure(Code.Unavailable);
        }
        return "done";
      },
      { policy: FAST },
    );
    assert.equal(answer, "done");
    assert.deepEqual(attempts, [1, 2, 3]);
  });

  it("waits at least the server's RetryInfo delay, up to the policy's bound", async () => {
    const delays: number[] = [];
    const shed = failure(Code.ResourceExhausted, "OVERLOADED", retryInfoBytes(0n, 4_000_000));
    await withRetry(
      async (attempt) => {
        if (attempt === 1) {
          throw shed;
        }
      },
      { policy: FAST, onRetry: (_, delayMs) => delays.push(delayMs) },
    );
    assert.deepEqual(delays, [4]);
  });

  it("never retries a refusal and gives up after attemptsMax attempts", async () => {
    let calls = 0;
    const refuse = async (): Promise<never> => {
      calls += 1;
      throw failure(Code.FailedPrecondition, "INSUFFICIENT_POINTS");
    };
    await assert.rejects(withRetry(refuse, { policy: FAST, requestId: "r-3" }), {
      reason: "INSUFFICIENT_POINTS",
      requestId: "r-3",
    });
    assert.equal(calls, 1);
    calls = 0;
    const unavailable = async (): Promise<never> => {
      calls += 1;
      throw failure(Code.Unavailable);
    };
    await assert.rejects(withRetry(unavailable, { policy: { ...FAST, attemptsMax: 3 } }), {
      codeName: "UNAVAILABLE",
    });
    assert.equal(calls, 3);
  });
});

describe("notifications", () => {
  it("resumes a broken stream from the last cursor: nothing lost, nothing repeated", async () => {
    const requests: Partial<WatchNotificationsRequest>[] = [];
    const note = (cursor: number) =>
      create(WatchNotificationsResponseSchema, {
        message: {
          case: "notification",
          value: create(NotificationSchema, { cursor: new Uint8Array([cursor]) }),
        },
      });
    // The first stream delivers cursors 1 and 2, then breaks; the second delivers 3.
    const queries = {
      async *watchNotifications(request: Partial<WatchNotificationsRequest>) {
        requests.push(request);
        if (requests.length === 1) {
          yield note(1);
          yield note(2);
          throw new ConnectError("connection reset", Code.Unavailable);
        }
        yield note(3);
      },
    } as unknown as Client<typeof QueryService>;
    const seen: number[] = [];
    const policy = { ...FAST, attemptsMax: 3, totalMsMax: 1_000 };
    for await (const notification of notifications(queries, { fromBeginning: true, policy })) {
      seen.push(notification.cursor[0] ?? 0);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(requests[0]?.fromBeginning, true);
    assert.deepEqual([...(requests[1]?.cursor ?? [])], [2]);
    assert.equal(requests[1]?.fromBeginning, false);
  });
});

describe("reasons", () => {
  it("lists every reason with its gRPC code and family", () => {
    const insufficient = REASONS.get("INSUFFICIENT_POINTS");
    assert.equal(insufficient?.code, "FAILED_PRECONDITION");
    assert.equal(insufficient?.family, "Refused");
    assert.equal(REASONS.get("ACCOUNT_NOT_FOUND")?.family, "NotFound");
    assert.equal(REASONS.has("UNSPECIFIED"), false);
  });
});

describe("callbacks", () => {
  it("signs the worked example of the PaymentCallback comment", () => {
    // The test vector of protos/pointex/v1/command_service.proto.
    const callback = create(PaymentCallbackSchema, {
      providerId: "sandbox",
      paymentId: "pay_01HZX3",
      tradeId: "T-000042",
      outcome: PaymentOutcome.CONFIRMED,
      amount: create(MoneySchema, { amountMinor: 12_550n, currency: "CNY" }),
      providerEventId: "evt_9f2c",
      signedAt: create(TimestampSchema, { seconds: 1_767_225_600n, nanos: 999 }),
    });
    assert.equal(
      new TextDecoder().decode(canonicalString(callback)),
      "pointex-payment-callback-v1\nsandbox\npay_01HZX3\nT-000042\nCONFIRMED\n12550\nCNY\n" +
        "evt_9f2c\n1767225600",
    );
    assert.equal(
      Buffer.from(signCallback(callback, "whsec_test_secret")).toString("hex"),
      "16a9c76549e659e41a4714ad3b9dcb94019f1c34596aa6c7e7cb1714a04cc25b",
    );
    const outcome = PaymentOutcome.UNSPECIFIED;
    const unset = create(PaymentCallbackSchema, { ...callback, outcome });
    assert.throws(() => canonicalString(unset), RangeError);
  });
});
