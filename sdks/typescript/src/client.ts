/**
 * Typed clients of both Pointex servers over gRPC (HTTP/2), with bearer authentication.
 *
 * The clients are Connect clients of the generated service descriptors: every RPC of
 * `CommandService` and `QueryService` is a method taking a plain object (the request's
 * fields in camelCase) and returning the reply message. This module only adds what every
 * partner needs around them: the `authorization: Bearer` header, TLS, per-call deadlines,
 * and the furthest position of any command reply seen (read-your-writes).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { CommandService } from "./gen/pointex/v1/command_service_pb.js";
import type { Position } from "./gen/pointex/v1/common_pb.js";
import { QueryService } from "./gen/pointex/v1/query_service_pb.js";
import { later } from "./positions.js";

/** How long one attempt of a command or a query may take unless the call says otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** TLS to the servers; with a certificate and its key, mutual TLS. */
export interface TlsOptions {
  /** PEM of the CA that signed the servers' certificates; absent: the system's roots. */
  readonly ca?: string | Buffer;
  /** PEM of the client certificate (mutual TLS). */
  readonly cert?: string | Buffer;
  /** PEM of the client certificate's key (mutual TLS). */
  readonly key?: string | Buffer;
  /** The name to check the servers' certificates against, when it is not the target's host. */
  readonly serverName?: string;
}

/** Where the two servers are, who is calling, and how. */
export interface PointexClientOptions {
  /** The command server, as host:port ("127.0.0.1:50051") or a URL. */
  readonly commandTarget: string;
  /** The query server, as host:port ("127.0.0.1:50052") or a URL. */
  readonly queryTarget: string;
  /** The bearer token, sent as `authorization: Bearer <token>` with every call. */
  readonly token: string;
  /** TLS settings; absent: plaintext HTTP/2 (for loopback and tests only). */
  readonly tls?: TlsOptions;
  /** The deadline of one command attempt, in milliseconds (default 10,000). */
  readonly commandTimeoutMs?: number;
  /**
   * The deadline of one query, in milliseconds, including the wait for `minPosition`
   * (default 10,000). Streams (WatchNotifications) need `timeoutMs: 0` in their call
   * options to run without one; `notifications()` passes it.
   */
  readonly queryTimeoutMs?: number;
  /** More interceptors, run after the authentication header is set. */
  readonly interceptors?: readonly Interceptor[];
}

/** Connect clients of both servers, and what the layer around them keeps. */
export interface PointexClient {
  /** Every RPC of `pointex.v1.CommandService`, on the command server. */
  readonly commands: Client<typeof CommandService>;
  /** Every RPC of `pointex.v1.QueryService`, on the query server. */
  readonly queries: Client<typeof QueryService>;
  /**
   * The furthest position of any command reply this client received, or undefined before
   * the first; pass it as a query's `minPosition` to read everything this client wrote.
   */
  lastPosition(): Position | undefined;
  /** Close both connections; calls in progress fail with CANCELLED. */
  close(): void;
}

/**
 * Return clients of the command and query servers that authenticate with `token`.
 *
 * Connections are made on first use and kept open (HTTP/2 multiplexes every call on one
 * connection per server); an idle connection does not keep Node's process alive.
 *
 * @example
 * const client = createPointexClient({
 *   commandTarget: "127.0.0.1:50051",
 *   queryTarget: "127.0.0.1:50052",
 *   token: process.env["POINTEX_PARTNER_TOKEN"] ?? "",
 * });
 */
export function createPointexClient(options: PointexClientOptions): PointexClient {
  if (options.token === "") {
    throw new TypeError("a bearer token is required");
  }
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${options.token}`);
    return next(request);
  };
  let furthest: Position | undefined;
  const observe: Interceptor = (next) => async (request) => {
    const response = await next(request);
    if (!response.stream) {
      const position = replyPosition(response.message);
      if (position !== undefined && position.token.length > 0) {
        furthest = later(furthest, position);
      }
    }
    return response;
  };
  const extra = options.interceptors ?? [];
  const command = connection(options.commandTarget, options.tls);
  const query = connection(options.queryTarget, options.tls);
  const commandTransport = createGrpcTransport({
    baseUrl: command.baseUrl,
    sessionManager: command.sessions,
    interceptors: [auth, observe, ...extra],
    defaultTimeoutMs: options.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  const queryTransport = createGrpcTransport({
    baseUrl: query.baseUrl,
    sessionManager: query.sessions,
    interceptors: [auth, ...extra],
    defaultTimeoutMs: options.queryTimeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return {
    commands: createClient(CommandService, commandTransport),
    queries: createClient(QueryService, queryTransport),
    lastPosition: () => furthest,
    close: () => {
      command.sessions.abort();
      query.sessions.abort();
    },
  };
}

/** The two targets from POINTEX_COMMAND_TARGET and POINTEX_QUERY_TARGET. */
export interface Targets {
  readonly commandTarget: string;
  readonly queryTarget: string;
}

/**
 * Return the targets from POINTEX_COMMAND_TARGET and POINTEX_QUERY_TARGET; the defaults are
 * the addresses `make run` listens on.
 */
export function targetsFromEnv(env: NodeJS.ProcessEnv = process.env): Targets {
  return {
    commandTarget: env["POINTEX_COMMAND_TARGET"] ?? "127.0.0.1:50051",
    queryTarget: env["POINTEX_QUERY_TARGET"] ?? "127.0.0.1:50052",
  };
}

/**
 * Return TLS settings read from PEM files: the CA, and for mutual TLS a client certificate
 * and its key (both or neither).
 */
export function tlsFromFiles(files: {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  serverName?: string | undefined;
}): TlsOptions {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TypeError("mutual TLS needs both a certificate and its key");
  }
  return {
    ...(files.ca !== undefined ? { ca: readFileSync(files.ca) } : {}),
    ...(files.cert !== undefined ? { cert: readFileSync(files.cert) } : {}),
    ...(files.key !== undefined ? { key: readFileSync(files.key) } : {}),
    ...(files.serverName !== undefined ? { serverName: files.serverName } : {}),
  };
}

interface Connection {
  readonly baseUrl: string;
  readonly sessions: Http2SessionManager;
}

function connection(target: string, tls: TlsOptions | undefined): Connection {
  const scheme = tls === undefined ? "http" : "https";
  const baseUrl = target.includes("://") ? target : `${scheme}://${target}`;
  if (tls === undefined) {
    return { baseUrl, sessions: new Http2SessionManager(baseUrl) };
  }
  const secure = {
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
    ...(tls.key !== undefined ? { key: tls.key } : {}),
    ...(tls.serverName !== undefined ? { servername: tls.serverName } : {}),
  };
  return { baseUrl, sessions: new Http2SessionManager(baseUrl, undefined, secure) };
}

/** Return a reply's `position` field, when it has one (every command reply does). */
function replyPosition(message: object): Position | undefined {
  if (!("position" in message)) {
    return undefined;
  }
  const position: unknown = message.position;
  if (
    typeof position === "object" &&
    position !== null &&
    "$typeName" in position &&
    position.$typeName === "pointex.v1.Position"
  ) {
    return position as Position;
  }
  return undefined;
}
