// google.protobuf.Timestamp <-> milliseconds.
import type { Timestamp } from "../api/google/protobuf/timestamp.js";

export function timestampToMs(ts: Timestamp): number {
  return ts.seconds * 1000 + Math.floor(ts.nanos / 1e6);
}

export function msToTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round(ms - seconds * 1000) * 1e6 };
}
