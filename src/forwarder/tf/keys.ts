// How the TF virtual-network endpoint hands TF's object ids to the TF forwarder: keys of the connection
// context's extra_context (a string map every hop carries unchanged).
export const tfKeys = {
  vmUuid: "tf.vm-uuid",
  vmName: "tf.vm-name",
  vmiUuid: "tf.vmi-uuid",
  vnUuid: "tf.vn-uuid",
  vnName: "tf.vn-name",
  /** The IPv4 instance-ip, its subnet's gateway and DNS address (absent when the VN has no IPv4 subnet). */
  iipUuid: "tf.iip-uuid",
  fipUuid: "tf.fip-uuid",
  floatingIp: "tf.floating-ip",
  gateway: "tf.gateway",
  dns: "tf.dns-server",
  /** The IPv6 instance-ip, its subnet's gateway and DNS address (present when the VN has an IPv6 subnet). */
  iip6Uuid: "tf.iip6-uuid",
  gateway6: "tf.gateway6",
  dns6: "tf.dns-server6",
  vrouter: "tf.vrouter",
  /** Set by the TF forwarder on its way to the endpoint: the client's interface name (VMI annotation). */
  vmIfname: "tf.vm-ifname",
} as const;

/** The MAC TF's agent answers with for the subnet gateway (`Agent::vrrp_mac_`, spec §0). */
export const tfGatewayMac = "00:00:5e:00:01:00";

/** The VM name of a connection: one TF VM per NSM connection, so names never collide (spec §5). */
export const vmNameOf = (connId: string): string => `nsm__${connId}`;

/**
 * The instance-ip name of a connection's address of one family. The IPv4 one keeps the VM's name (objects
 * made before IPv6 support are found again); the IPv6 one has its own prefix, so no connection id can make
 * one name collide with another's.
 */
export const iipNameOf = (connId: string, family: "v4" | "v6"): string =>
  family === "v4" ? vmNameOf(connId) : `nsm-v6__${connId}`;

/** A JSON field as text ("" when absent or not a scalar). */
export const textOf = (v: unknown): string =>
  typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : "";
