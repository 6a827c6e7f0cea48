// Input validation for registry messages. Every failure is INVALID_ARGUMENT naming the offending field, and
// it happens before any element touches state, so a bad request never leaves a half-written record.
import { invalidArgument } from "../core/errors.js";
import { validateRegisteredUrl } from "../core/url.js";
import type { Timestamp } from "../api/google/protobuf/timestamp.js";
import type {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceQuery,
} from "../api/registry.js";

export const limits = {
  nameMax: 253,
  labelsMax: 64,
  labelKeyMax: 253,
  labelValueMax: 1024,
  servicesMax: 64,
  matchesMax: 64,
  routesMax: 64,
  urlMax: 1024,
  pathIdsMax: 32,
};

// Timestamp range of google.protobuf.Timestamp: 0001-01-01 .. 9999-12-31.
const minSeconds = -62_135_596_800;
const maxSeconds = 253_402_300_799;

export function checkName(name: string, field: string, required: boolean): void {
  if (name === "") {
    if (required) throw invalidArgument(field, "must not be empty");
    return;
  }
  if (name.length > limits.nameMax)
    throw invalidArgument(field, `is ${name.length} characters, max ${limits.nameMax}`);
  if (/[\s\p{Cc}]/u.test(name))
    throw invalidArgument(field, `"${name}" contains whitespace or control characters`);
}

export function checkLabels(labels: Record<string, string> | undefined, field: string): void {
  if (!labels) return;
  const entries = Object.entries(labels);
  if (entries.length > limits.labelsMax)
    throw invalidArgument(field, `has ${entries.length} entries, max ${limits.labelsMax}`);
  for (const [k, v] of entries) {
    if (k === "") throw invalidArgument(field, "has an empty key");
    if (k.length > limits.labelKeyMax)
      throw invalidArgument(`${field}[${k.slice(0, 32)}…]`, `key longer than ${limits.labelKeyMax}`);
    if (v.length > limits.labelValueMax)
      throw invalidArgument(`${field}[${k}]`, `value longer than ${limits.labelValueMax}`);
  }
}

export function checkTimestamp(ts: Timestamp | undefined, field: string): void {
  if (!ts) return;
  if (!Number.isInteger(ts.seconds) || ts.seconds < minSeconds || ts.seconds > maxSeconds) {
    throw invalidArgument(field, `seconds ${ts.seconds} out of range`);
  }
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw invalidArgument(field, `nanos ${ts.nanos} out of range 0..999999999`);
  }
}

function checkList(list: unknown[], field: string, max: number): void {
  if (list.length > max) throw invalidArgument(field, `has ${list.length} entries, max ${max}`);
}

export function validateNetworkService(
  ns: NetworkService,
  nameRequired = true,
  field = "network_service",
): void {
  checkName(ns.name, `${field}.name`, nameRequired);
  if (ns.payload !== "" && ns.payload !== "IP" && ns.payload !== "ETHERNET") {
    throw invalidArgument(`${field}.payload`, `"${ns.payload}" is not IP or ETHERNET`);
  }
  checkList(ns.matches, `${field}.matches`, limits.matchesMax);
  checkList(ns.pathIds, `${field}.path_ids`, limits.pathIdsMax);
  ns.matches.forEach((m, i) => {
    const mf = `${field}.matches[${i}]`;
    checkLabels(m.sourceSelector, `${mf}.source_selector`);
    checkLabels(m.metadata?.labels, `${mf}.metadata.labels`);
    checkList(m.routes, `${mf}.routes`, limits.routesMax);
    m.routes.forEach((r, j) => checkLabels(r.destinationSelector, `${mf}.routes[${j}].destination_selector`));
  });
}

export function validateEndpoint(
  nse: NetworkServiceEndpoint,
  nameRequired = true,
  field = "network_service_endpoint",
): void {
  checkName(nse.name, `${field}.name`, nameRequired);
  checkList(nse.networkServiceNames, `${field}.network_service_names`, limits.servicesMax);
  nse.networkServiceNames.forEach((s, i) => checkName(s, `${field}.network_service_names[${i}]`, true));
  const labelled = Object.entries(nse.networkServiceLabels);
  checkList(
    labelled.map(([k]) => k),
    `${field}.network_service_labels`,
    limits.servicesMax,
  );
  for (const [svc, l] of labelled) {
    checkName(svc, `${field}.network_service_labels key`, true);
    checkLabels(l.labels, `${field}.network_service_labels[${svc}].labels`);
  }
  if (nse.url.length > limits.urlMax) throw invalidArgument(`${field}.url`, `longer than ${limits.urlMax}`);
  validateRegisteredUrl(nse.url, `${field}.url`);
  checkTimestamp(nse.expirationTime, `${field}.expiration_time`);
  checkTimestamp(nse.initialRegistrationTime, `${field}.initial_registration_time`);
  checkList(nse.pathIds, `${field}.path_ids`, limits.pathIdsMax);
}

export function validateServiceQuery(q: NetworkServiceQuery): void {
  if (q.networkService) validateNetworkService(q.networkService, false);
}

export function validateEndpointQuery(q: NetworkServiceEndpointQuery): void {
  const nse = q.networkServiceEndpoint;
  if (!nse) return;
  // In a query the url is a substring to look for, not a URL to dial.
  validateEndpoint({ ...nse, url: "" }, false);
  if (nse.url.length > limits.urlMax)
    throw invalidArgument("network_service_endpoint.url", `longer than ${limits.urlMax}`);
}
