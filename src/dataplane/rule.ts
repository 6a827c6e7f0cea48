// Policy-routing rules (`ip rule`): by source prefix to a table, at a given priority. The TF emulator's VRFs
// send a floating IP's traffic out its own way while the rest of the VN goes to the SNAT instance.
import netlink from "netlink";
import type { rt } from "netlink";
import type { NsContext } from "./context.js";
import { DataplaneError, isErrno, type OpContext } from "./errors.js";
import { afOf, parseCidr } from "./nl/codec.js";
import { NLM_F, RTM, type MessageBuilder } from "./nl/socket.js";

/** RT_TABLE_COMPAT: the header's table when the real id (≥256) is carried in FRA_TABLE. */
const RT_TABLE_COMPAT = 252;
const FR_ACT_TO_TBL = 1;

export interface RuleSpec {
  /** Source prefix ("10.0.0.5/32", "fd00::/64"). */
  from: string;
  table: number;
  /** Rule priority (preference); lower runs first. */
  priority: number;
}

export interface RuleDelOptions {
  /** Succeed if there is no such rule. */
  missingOk?: boolean;
}

function encode(spec: RuleSpec, ctx: OpContext): MessageBuilder {
  const src = parseCidr(spec.from);
  if (!src) throw DataplaneError.of(ctx, "EINVAL", `"${spec.from}" is not a prefix or an address`);
  if (!Number.isInteger(spec.table) || spec.table < 1 || spec.table > 0xffffffff)
    throw DataplaneError.of(ctx, "EINVAL", `table ${spec.table} is not a valid table id`);
  const data: rt.Rule = {
    family: afOf(src.family),
    srcLen: src.prefixLen,
    table: spec.table < 256 ? spec.table : RT_TABLE_COMPAT,
    action: FR_ACT_TO_TBL,
  };
  const attrs: rt.RuleAttrs = { src: src.bytes, table: spec.table, priority: spec.priority };
  return (out) => netlink.rt.formatRuleMessage({ kind: "rule", data, attrs }, out);
}

const describe = (spec: RuleSpec): string => `from ${spec.from} lookup ${spec.table} pref ${spec.priority}`;

/** Rule operations in one namespace. */
export class RuleOps {
  constructor(private readonly ns: NsContext) {}

  /** Adds the rule; an identical one already there is fine. */
  async ensure(spec: RuleSpec): Promise<void> {
    const ctx = this.ns.ctx("rule add", describe(spec));
    try {
      await this.ns.rtnl.request(RTM.NEWRULE, encode(spec, ctx), NLM_F.CREATE | NLM_F.EXCL, ctx);
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
  }

  async del(spec: RuleSpec, opts: RuleDelOptions = {}): Promise<void> {
    const ctx = this.ns.ctx("rule del", describe(spec));
    try {
      await this.ns.rtnl.request(RTM.DELRULE, encode(spec, ctx), 0, ctx);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENOENT", "ESRCH")) return;
      throw err;
    }
  }
}
