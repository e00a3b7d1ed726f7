/**
 * Signing payment callbacks (`pointex.v1.PaymentCallback`), for a payment provider.
 *
 * A provider signs each callback with HMAC-SHA256 over a canonical string of its fields,
 * never over protobuf bytes: two encoders may serialise the same message differently,
 * while the canonical string is fixed by the contract (the PaymentCallback comment in
 * protos/pointex/v1/command_service.proto, which gives a worked example).
 *
 * @module
 */

import { createHmac } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  type PaymentCallback,
  PaymentCallbackSchema,
} from "./gen/pointex/v1/command_service_pb.js";
import { MoneySchema, PaymentOutcome } from "./gen/pointex/v1/common_pb.js";

/** The first line of the canonical string: its format and version. */
export const CANONICAL_VERSION = "pointex-payment-callback-v1";

const OUTCOME_NAMES: ReadonlyMap<PaymentOutcome, string> = new Map([
  [PaymentOutcome.CONFIRMED, "CONFIRMED"],
  [PaymentOutcome.FAILED, "FAILED"],
]);

/**
 * Return the canonical string a callback's signature covers, as UTF-8 bytes.
 *
 * Nine lines joined by a line feed, without a trailing one. `keyId`, `signature` and
 * `signedAt.nanos` are not covered.
 *
 * @throws RangeError when the outcome is neither CONFIRMED nor FAILED (such a callback is
 *   never valid, so it has no canonical string).
 */
export function canonicalString(callback: PaymentCallback): Uint8Array {
  const outcome = OUTCOME_NAMES.get(callback.outcome);
  if (outcome === undefined) {
    throw new RangeError(`outcome ${callback.outcome} is neither CONFIRMED nor FAILED`);
  }
  const lines = [
    CANONICAL_VERSION,
    callback.providerId,
    callback.paymentId,
    callback.tradeId,
    outcome,
    (callback.amount?.amountMinor ?? 0n).toString(),
    callback.amount?.currency ?? "",
    callback.providerEventId,
    (callback.signedAt?.seconds ?? 0n).toString(),
  ];
  return new TextEncoder().encode(lines.join("\n"));
}

/** Return the raw 32-byte HMAC-SHA256 of the callback's canonical string under `secret`. */
export function signCallback(callback: PaymentCallback, secret: string | Uint8Array): Uint8Array {
  const digest = createHmac("sha256", secret).update(canonicalString(callback)).digest();
  return new Uint8Array(digest);
}

/** The fields of a callback that a provider fills in. */
export interface CallbackFields {
  readonly providerId: string;
  readonly paymentId: string;
  readonly tradeId: string;
  /** True for ConfirmPayment, false for FailPayment. */
  readonly confirmed: boolean;
  /** The amount in minor units of `currency`; it must equal the trade's amount due. */
  readonly amountMinor: bigint;
  readonly currency: string;
  /** Your unique id of this notification; a redelivery keeps it. */
  readonly providerEventId: string;
  /** Your clock in whole Unix seconds; sign every redelivery afresh. */
  readonly signedAtS: bigint;
  /** The name of the secret, during a key rotation. */
  readonly keyId?: string;
}

/** Return a callback with every signed field set, signed with `secret`. */
export function signedCallback(
  fields: CallbackFields,
  secret: string | Uint8Array,
): PaymentCallback {
  const callback = create(PaymentCallbackSchema, {
    providerId: fields.providerId,
    paymentId: fields.paymentId,
    tradeId: fields.tradeId,
    outcome: fields.confirmed ? PaymentOutcome.CONFIRMED : PaymentOutcome.FAILED,
    amount: create(MoneySchema, { amountMinor: fields.amountMinor, currency: fields.currency }),
    providerEventId: fields.providerEventId,
    signedAt: create(TimestampSchema, { seconds: fields.signedAtS }),
    keyId: fields.keyId ?? "",
  });
  callback.signature = signCallback(callback, secret);
  return callback;
}
