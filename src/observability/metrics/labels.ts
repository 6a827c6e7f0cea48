// Label values that keep series counts bounded: gRPC code names, and names that callers choose (network
// services) capped per label, so a caller inventing names cannot grow the scrape without end.
import { status } from "@grpc/grpc-js";
import { toStatusError } from "../../core/errors.js";
import { metricSet } from "./registry.js";

/** The gRPC code name (OK, NOT_FOUND, …) a failed call returns, as the handlers map it. */
export function codeOf(err: unknown): string {
  return status[toStatusError(err).code] ?? "UNKNOWN";
}

/** Values past the cap are reported as this. */
export const otherLabel = "_other";

/**
 * Passes the first `max` distinct values of a label through and reports later ones as `_other`: a label fed
 * from requests (a service name) stays bounded whatever the callers send.
 */
export class LabelLimit {
  private readonly seen = new Set<string>();

  constructor(private readonly max = 200) {}

  value(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return otherLabel;
    this.seen.add(v);
    return v;
  }
}

const services = metricSet(() => new LabelLimit());

/** The `service` label of a network service name: one cap per process, shared by every metric. */
export function serviceLabel(name: string): string {
  return services()?.value(name) ?? name;
}
