// Names a leg's mechanism for people: KERNEL is a veth (the kernel forwarder's, or the TF forwarder's into a
// virtual network), VXLAN a tunnel between two forwarders' nodes; anything else keeps its type's name.
import type { Mechanism } from "../api/connection.js";
import { kernelParams, types, vxlanParams } from "../networkservice/mechanisms/common.js";
import { tfKeys } from "../forwarder/tf/keys.js";

export interface NamedMechanism {
  kind: string;
  detail: string;
}

/** The tf.* keys of a connection context, or undefined when a TF endpoint added none. */
export function tfContextOf(extra: Record<string, string> | undefined): Record<string, string> | undefined {
  const tf = Object.entries(extra ?? {}).filter(([k]) => k.startsWith("tf."));
  return tf.length > 0 ? Object.fromEntries(tf) : undefined;
}

/**
 * `tf` is the connection's TF context (tfContextOf); `tfForwarder` says the leg ends at a TF forwarder
 * (labels tf=true). Either makes a KERNEL leg a leg into a TF virtual network.
 */
export function nameMechanism(
  m: Mechanism | undefined,
  tf: Record<string, string> | undefined,
  tfForwarder = false,
): NamedMechanism {
  if (!m || m.type === "") return { kind: "unknown", detail: "" };
  const p = m.parameters;
  if (m.type === types.VXLAN) {
    const ends = [p[vxlanParams.srcIp], p[vxlanParams.dstIp]].filter((s) => s).join(" → ");
    return { kind: "vxlan", detail: [`VNI ${p[vxlanParams.vni] ?? "?"}`, ends].filter((s) => s).join(", ") };
  }
  if (m.type === types.KERNEL) {
    const ifname = p[kernelParams.name] ?? "";
    if (tf !== undefined || tfForwarder) {
      const vn = tf?.[tfKeys.vnName] ?? tf?.[tfKeys.vnUuid] ?? "?";
      const fip = tf?.[tfKeys.floatingIp];
      return {
        kind: "tf-vn",
        detail: [`VN ${vn}`, fip ? `floating IP ${fip}` : "", ifname].filter((s) => s).join(", "),
      };
    }
    return { kind: "veth", detail: ifname };
  }
  return { kind: m.type.toLowerCase(), detail: "" };
}
