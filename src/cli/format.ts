// Human output: aligned tables and CRD-shaped YAML (spec §1.8: upstream field names).
import { stringify } from "yaml";
import { NetworkService, NetworkServiceEndpoint } from "../api/registry.js";

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function serviceCrd(ns: NetworkService): object {
  const { name, ...spec } = NetworkService.toJSON(ns) as Record<string, unknown>;
  return {
    apiVersion: "networkservicemesh.io/v1",
    kind: "NetworkService",
    metadata: { name },
    spec: { name, ...spec },
  };
}

export function endpointCrd(nse: NetworkServiceEndpoint): object {
  const { name, ...spec } = NetworkServiceEndpoint.toJSON(nse) as Record<string, unknown>;
  return {
    apiVersion: "networkservicemesh.io/v1",
    kind: "NetworkServiceEndpoint",
    metadata: { name },
    spec: { name, ...spec },
  };
}

export function yamlDocs(docs: object[]): string {
  return docs.map((d) => stringify(d)).join("---\n");
}

export function expiresIn(nse: NetworkServiceEndpoint): string {
  if (!nse.expirationTime) return "never";
  const s = Math.round((nse.expirationTime.seconds * 1000 - Date.now()) / 1000);
  return s <= 0 ? "expired" : `${s}s`;
}
