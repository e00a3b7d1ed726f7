/**
 * Failed calls as `PointexError`: the gRPC code, the `google.rpc.ErrorInfo` reason and
 * metadata, and the server's `google.rpc.RetryInfo` delay.
 *
 * A Pointex server sends every refusal with an ErrorInfo (domain "pointex.v1") in the
 * status details; the reason is what a program branches on, never the message. The details
 * arrive undecoded (a type name and the message's bytes), and the two messages needed here
 * are small and frozen, so they are decoded by hand with the protobuf wire reader rather
 * than by shipping generated code for the googleapis protos.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type Family, type Reason, REASONS } from "./reasons.js";

const ERROR_INFO_TYPE = "google.rpc.ErrorInfo";
const RETRY_INFO_TYPE = "google.rpc.RetryInfo";
const MS_PER_S = 1000n;
const NS_PER_MS = 1_000_000n;
// A delay the server asks for is honoured up to a bound anyway (see retry.ts); this only
// keeps a hostile or corrupt Duration from overflowing the conversion to a number.
const RETRY_DELAY_MS_MAX = 86_400_000n;

/** The canonical gRPC name of each status code, by its number. */
const CODE_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

const FAMILIES: ReadonlyMap<Code, Family> = new Map<Code, Family>([
  [Code.InvalidArgument, "InvalidRequest"],
  [Code.OutOfRange, "InvalidRequest"],
  [Code.FailedPrecondition, "Refused"],
  [Code.NotFound, "NotFound"],
  [Code.PermissionDenied, "PermissionDenied"],
  [Code.Unauthenticated, "Unauthenticated"],
  [Code.AlreadyExists, "Conflict"],
  [Code.Aborted, "Conflict"],
  [Code.ResourceExhausted, "Overloaded"],
  [Code.Unavailable, "Unavailable"],
  [Code.DeadlineExceeded, "Unavailable"],
  [Code.Canceled, "Unavailable"],
]);

/** The decoded `google.rpc.ErrorInfo` of a status. */
export interface ErrorInfo {
  /** The reason, an `ErrorReason` name without its prefix, e.g. "INSUFFICIENT_POINTS". */
  readonly reason: string;
  /** Who defined the reason: "pointex.v1" for a Pointex server. */
  readonly domain: string;
  /** Context of the failure, e.g. "account_id"; keys are listed with each reason. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Return the canonical gRPC name of a status code ("FAILED_PRECONDITION"). */
export function codeName(code: Code): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** Return the family a status code belongs to; an unexpected code is an InternalError. */
export function familyOf(code: Code): Family {
  return FAMILIES.get(code) ?? "InternalError";
}

/**
 * A call failed: the server refused it, or no answer came.
 *
 * Branch on `reason` (and `family` or `code`), never on the message. `family` names the
 * kind of failure as the Python SDK's exception classes do: "Refused" for
 * FAILED_PRECONDITION, "NotFound", "Unavailable" for UNAVAILABLE and DEADLINE_EXCEEDED...
 */
export class PointexError extends Error {
  override readonly name = "PointexError";
  /** The gRPC status code (Connect's `Code` has the gRPC numbers). */
  readonly code: Code;
  /** The code's canonical gRPC name, e.g. "FAILED_PRECONDITION". */
  readonly codeName: string;
  /** The family of the code. */
  readonly family: Family;
  /**
   * The ErrorInfo reason; empty when the status carried none, which means the gRPC
   * library produced it (no server answered), not a Pointex server.
   */
  readonly reason: string;
  /** The ErrorInfo domain ("pointex.v1"), empty without an ErrorInfo. */
  readonly domain: string;
  /** The ErrorInfo metadata, e.g. "account_id" or "required_points". */
  readonly metadata: Readonly<Record<string, string>>;
  /** The server's RetryInfo delay in milliseconds, if it sent one. */
  readonly retryDelayMs: number | undefined;
  /** The request id a command ran under (empty for reads): retrying with it is safe. */
  readonly requestId: string;
  /** The status message, a short English text for people. */
  readonly rawMessage: string;

  /** Build the error from a failed call's `ConnectError`. */
  constructor(error: ConnectError, requestId = "") {
    const info = errorInfo(error);
    const code = error.code;
    const parts = {
      codeName: codeName(code),
      reason: info?.reason ?? "",
      rawMessage: error.rawMessage,
      metadata: info?.metadata ?? {},
      requestId,
    };
    super(describe(parts), { cause: error });
    this.code = code;
    this.codeName = parts.codeName;
    this.family = familyOf(code);
    this.reason = parts.reason;
    this.domain = info?.domain ?? "";
    this.metadata = parts.metadata;
    this.retryDelayMs = retryDelayMs(error);
    this.requestId = requestId;
    this.rawMessage = error.rawMessage;
  }

  /** The reasons table's entry for `reason`, if this SDK knows it. */
  get described(): Reason | undefined {
    return REASONS.get(this.reason);
  }

  /** Whether no server answered (as opposed to a server refusing). */
  get unreachable(): boolean {
    const transport = this.code === Code.Unavailable || this.code === Code.DeadlineExceeded;
    return this.reason === "" && transport;
  }

  /** Whether a command may or may not have been applied: send it again with `requestId`. */
  get outcomeUnknown(): boolean {
    return this.requestId !== "" && this.family === "Unavailable";
  }
}

/**
 * Return the `PointexError` of anything a call threw (a `ConnectError`, an abort, a bug).
 *
 * Pass the command's request id so that the error names it. A `PointexError` is returned
 * as it is.
 */
export function pointexError(error: unknown, requestId = ""): PointexError {
  if (error instanceof PointexError) {
    return error;
  }
  return new PointexError(ConnectError.from(error), requestId);
}

/** Return the decoded ErrorInfo among a failed call's status details, if there is one. */
export function errorInfo(error: ConnectError): ErrorInfo | undefined {
  for (const detail of error.details) {
    if ("type" in detail && detail.type === ERROR_INFO_TYPE) {
      return decodeErrorInfo(detail.value);
    }
  }
  return undefined;
}

/** Return the RetryInfo delay among a failed call's status details, in milliseconds. */
export function retryDelayMs(error: ConnectError): number | undefined {
  for (const detail of error.details) {
    if ("type" in detail && detail.type === RETRY_INFO_TYPE) {
      return decodeRetryInfoMs(detail.value);
    }
  }
  return undefined;
}

/**
 * Decode a `google.rpc.ErrorInfo`: reason = 1, domain = 2, map<string, string> metadata = 3.
 *
 * Unknown fields are skipped, as any protobuf reader does.
 */
export function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const reader = new BinaryReader(bytes);
  let reason = "";
  let domain = "";
  const metadata: Record<string, string> = {};
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      reason = reader.string();
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      domain = reader.string();
    } else if (field === 3 && wireType === WireType.LengthDelimited) {
      const [key, value] = decodeMapEntry(reader.bytes());
      metadata[key] = value;
    } else {
      reader.skip(wireType, field);
    }
  }
  return { reason, domain, metadata };
}

/** Decode one entry of a map<string, string>: key = 1, value = 2. */
function decodeMapEntry(bytes: Uint8Array): [string, string] {
  const reader = new BinaryReader(bytes);
  let key = "";
  let value = "";
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      key = reader.string();
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      value = reader.string();
    } else {
      reader.skip(wireType, field);
    }
  }
  return [key, value];
}

/**
 * Decode a `google.rpc.RetryInfo` (retry_delay = 1, a `google.protobuf.Duration` of
 * int64 seconds = 1 and int32 nanos = 2) into whole milliseconds.
 */
export function decodeRetryInfoMs(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let delayMs = 0n;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      delayMs = decodeDurationMs(reader.bytes());
    } else {
      reader.skip(wireType, field);
    }
  }
  return Number(delayMs);
}

function decodeDurationMs(bytes: Uint8Array): bigint {
  const reader = new BinaryReader(bytes);
  let seconds = 0n;
  let nanos = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) {
      seconds = BigInt(reader.int64());
    } else if (field === 2 && wireType === WireType.Varint) {
      nanos = reader.int32();
    } else {
      reader.skip(wireType, field);
    }
  }
  const ms = seconds * MS_PER_S + BigInt(nanos) / NS_PER_MS;
  if (ms < 0n) {
    return 0n;
  }
  return ms > RETRY_DELAY_MS_MAX ? RETRY_DELAY_MS_MAX : ms;
}

interface Described {
  codeName: string;
  reason: string;
  rawMessage: string;
  metadata: Readonly<Record<string, string>>;
  requestId: string;
}

/** Return the failure on one line: code, reason, message, metadata and request id. */
function describe(parts: Described): string {
  let text = [parts.codeName, parts.reason].filter((part) => part !== "").join(" ");
  // The library's messages can span lines.
  const message = parts.rawMessage.split(/\s+/).filter((word) => word !== "").join(" ");
  if (message !== "") {
    text = `${text}: ${message}`;
  }
  const keys = Object.keys(parts.metadata).sort();
  if (keys.length > 0) {
    text = `${text} [${keys.map((key) => `${key}=${parts.metadata[key]}`).join(", ")}]`;
  }
  if (parts.requestId !== "") {
    text = `${text} (request id ${parts.requestId})`;
  }
  return text;
}
