/**
 * The Pointex TypeScript SDK: typed clients of the command and query servers, generated
 * from the `pointex.v1` contract, and a small hand-written layer around them (bearer
 * authentication, TLS, error reasons, retries with request ids, positions, notifications,
 * callback signing).
 *
 * Every message, enum and service of `pointex.v1` is exported from here as protoc-gen-es
 * generates it: 64-bit integers (points, money in minor units, positions) are `bigint`.
 * The sandbox provider's API is under `@pointex/client/gen/pointex/sandbox/v1/sandbox_pb.js`.
 *
 * @module
 */

export {
  createPointexClient,
  DEFAULT_TIMEOUT_MS,
  type PointexClient,
  type PointexClientOptions,
  type Targets,
  targetsFromEnv,
  tlsFromFiles,
  type TlsOptions,
} from "./client.js";
export {
  codeName,
  decodeErrorInfo,
  decodeRetryInfoMs,
  type ErrorInfo,
  errorInfo,
  familyOf,
  PointexError,
  pointexError,
  retryDelayMs,
} from "./errors.js";
export { type Family, type Reason, REASONS } from "./reasons.js";
export {
  DEFAULT_RETRY_POLICY,
  requestId,
  retryable,
  retryDelayMsAfter,
  type RetryOptions,
  type RetryPolicy,
  withRetry,
} from "./retry.js";
export {
  decodeGlobal,
  encodeGlobal,
  FORMAT_GLOBAL,
  InvalidPositionError,
  later,
  positionMessage,
} from "./positions.js";
export {
  notifications,
  type NotificationsOptions,
  WATCH_RETRY_POLICY,
} from "./notifications.js";
export {
  CANONICAL_VERSION,
  type CallbackFields,
  canonicalString,
  signCallback,
  signedCallback,
} from "./callbacks.js";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "./gen/pointex/v1/command_service_pb.js";
export * from "./gen/pointex/v1/common_pb.js";
export * from "./gen/pointex/v1/errors_pb.js";
export * from "./gen/pointex/v1/event_feed_pb.js";
export * from "./gen/pointex/v1/events_pb.js";
export * from "./gen/pointex/v1/query_service_pb.js";
