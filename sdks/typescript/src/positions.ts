/**
 * Position tokens: the opaque, versioned form of a position on the wire.
 *
 * A `pointex.v1.Position` wraps bytes whose first byte names the format. Format 1 is one
 * global position as an 8-byte big-endian unsigned integer. Clients compare tokens and pass
 * them back (`minPosition`, `fromPosition`); they never do arithmetic on them, so a later
 * partitioned store can introduce a per-slice format without breaking anyone.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { type Position, PositionSchema } from "./gen/pointex/v1/common_pb.js";

/** The format byte of a token holding one global position. */
export const FORMAT_GLOBAL = 1;
const GLOBAL_TOKEN_BYTES = 9;
const POSITION_MAX = 2n ** 64n - 1n;

/** A position token is malformed or of a format this release does not know. */
export class InvalidPositionError extends Error {
  override readonly name = "InvalidPositionError";
}

/**
 * Return the format-1 token of a global position (0 = before the first event).
 *
 * @throws RangeError when `position` is negative or does not fit in 64 bits.
 */
export function encodeGlobal(position: bigint): Uint8Array {
  if (position < 0n || position > POSITION_MAX) {
    throw new RangeError(`a global position is 0..2^64-1, not ${position}`);
  }
  const token = new Uint8Array(GLOBAL_TOKEN_BYTES);
  token[0] = FORMAT_GLOBAL;
  new DataView(token.buffer).setBigUint64(1, position, false);
  return token;
}

/**
 * Return the global position in `token`; an empty token means 0 (the beginning).
 *
 * @throws InvalidPositionError for a token of another format or length.
 */
export function decodeGlobal(token: Uint8Array): bigint {
  if (token.length === 0) {
    return 0n;
  }
  if (token[0] !== FORMAT_GLOBAL) {
    throw new InvalidPositionError(`unknown position format ${token[0]}`);
  }
  if (token.length !== GLOBAL_TOKEN_BYTES) {
    throw new InvalidPositionError(`a format-1 position has 9 bytes, not ${token.length}`);
  }
  return new DataView(token.buffer, token.byteOffset, token.length).getBigUint64(1, false);
}

/** Return the `pointex.v1.Position` of a global position; 0 travels as an empty token. */
export function positionMessage(position: bigint): Position {
  return create(PositionSchema, {
    token: position === 0n ? new Uint8Array() : encodeGlobal(position),
  });
}

/**
 * Return whichever of two positions is further along (the one just seen if not comparable).
 *
 * A client keeps the furthest position it has seen to read its own writes; positions of a
 * format this release does not know cannot be compared, and the newest one seen is kept.
 */
export function later(current: Position | undefined, seen: Position): Position {
  if (current === undefined || current.token.length === 0) {
    return seen;
  }
  try {
    return decodeGlobal(seen.token) >= decodeGlobal(current.token) ? seen : current;
  } catch (error) {
    if (error instanceof InvalidPositionError) {
      return seen;
    }
    throw error;
  }
}
