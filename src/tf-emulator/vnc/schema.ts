// The slice of the VNC schema the emulator serves (spec §2.5): which types exist, where each may hang in the
// fq_name tree, and the naming rules that turn a hyphenated type into URL paths and JSON keys. Refs are not
// listed per type: any `<type>_refs` key naming a known type is a ref, which keeps the table small while
// still rejecting refs to types the emulator does not know.

/** The parent type "config-root" means: top of the tree, fq_name of length 1, no parent fields. */
export const configRoot = "config-root";

/** Allowed parent types per type, the default first (used when a create names no parent_type). */
const parents: Record<string, readonly string[]> = {
  domain: [configRoot],
  project: ["domain"],
  "network-ipam": ["project"],
  "virtual-network": ["project"],
  "virtual-machine": [],
  "virtual-machine-interface": ["project", "virtual-machine", "virtual-router"],
  "instance-ip": [],
  "virtual-router": ["global-system-config"],
  "floating-ip-pool": ["virtual-network"],
  "floating-ip": ["floating-ip-pool", "instance-ip"],
  "logical-router": ["project"],
  "routing-instance": ["virtual-network"],
  "route-target": [configRoot],
  "application-policy-set": ["project"],
  "global-system-config": [configRoot],
  "global-vrouter-config": ["global-system-config"],
  "security-group": ["project"],
  "network-policy": ["project"],
};

export const resourceTypes: readonly string[] = Object.keys(parents);

export function isResourceType(type: string): boolean {
  return Object.hasOwn(parents, type);
}

/** Parent types for `type`; an empty list means the type has no parent (fq_name is one element). */
export function parentTypes(type: string): readonly string[] {
  return parents[type] ?? [];
}

/** `virtual-network` → `virtual_network` (JSON keys are underscored, type names hyphenated). */
export const underscored = (type: string): string => type.replace(/-/g, "_");
export const hyphenated = (key: string): string => key.replace(/_/g, "-");

/** Collection path segment: type + "s", whatever English says (`network-policys`). */
export const plural = (type: string): string => `${type}s`;

export const refsKey = (toType: string): string => `${underscored(toType)}_refs`;
export const backRefsKey = (fromType: string): string => `${underscored(fromType)}_back_refs`;
export const childrenKey = (childType: string): string => `${underscored(childType)}s`;

/** The target type of a `<type>_refs` key, or undefined when the key is not a ref list. */
export function refKeyTarget(key: string): string | undefined {
  if (!key.endsWith("_refs") || key.endsWith("_back_refs")) return undefined;
  return hyphenated(key.slice(0, -"_refs".length));
}

/**
 * Python's repr of a list of strings, which is how the real server prints fq_names and hrefs in its error
 * texts (`['default-domain', 'k8s-default']`). Clients match on these texts, so the quoting matters.
 */
export function pyList(items: readonly string[]): string {
  return `[${items.map((s) => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(/'/g, "\\'")}'`)).join(", ")}]`;
}

/** The well-known VNs whose instance-ips are not allocated from a subnet (server skips them, as TF does). */
export const ipFabricFqName = ["default-domain", "default-project", "ip-fabric"];
export const linkLocalFqName = ["default-domain", "default-project", "__link_local__"];

export const sameFqName = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((s, i) => s === b[i]);
