// Small registry elements: `expire` as upstream's registry expire (expiration_time = min(now + period, our own
// token's expiry, the caller's token expiry); an earlier requested time is kept), `setpayload`, and `validate`
// letting Unregister of an empty name through.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata } from "@grpc/grpc-js";
import { CallContext } from "../core/context.js";
import { StatusError } from "../core/errors.js";
import { rootLogger } from "../core/log.js";
import { msToTimestamp, timestampToMs } from "../core/time.js";
import { generatedIdentity } from "../security/identity.js";
import { formatRfc3339Nano, generateToken, tokenKey, tokenMetadata } from "../security/token.js";
import { endpoint, service } from "./client.js";
import { expire, setPayload, validateNS, validateNSE } from "./elements.js";
import { updateTokenRegistry } from "./security.js";
import { nsRegistryChain, nseRegistryChain } from "./types.js";
import { updatePathServer } from "./updatepath.js";

const self = generatedIdentity("registry");
const caller = generatedIdentity("nse-1");

/** updatepath → updatetoken (our tokens live `ownLifetimeMs`) → expire(periodMs): the stored expiry in ms. */
async function expiresAt(
  opts: { periodMs?: number; ownLifetimeMs?: number; md?: Metadata; requestedMs?: number } = {},
): Promise<number> {
  const chain = nseRegistryChain([
    updatePathServer("registry"),
    updateTokenRegistry((aud) => generateToken(self, aud, opts.ownLifetimeMs ?? 600_000), true),
    expire(opts.periodMs ?? 60_000),
  ]);
  const ctx = new CallContext(rootLogger, new AbortController().signal, opts.md ?? new Metadata());
  const out = await chain.register(
    endpoint({
      name: "nse-1",
      url: "tcp://198.18.0.1:5001",
      ...(opts.requestedMs !== undefined && { expirationTime: msToTimestamp(opts.requestedMs) }),
    }),
    ctx,
  );
  return timestampToMs(out.expirationTime!);
}

async function callerToken(lifetimeMs: number): Promise<Metadata> {
  const t = await generateToken(caller, [self.spiffeId], lifetimeMs);
  return tokenMetadata(t.token, t.expires);
}

/** Asserts `at` is `wantFromNow` ms from now, within the second a token's `exp` is rounded to. */
function near(at: number, wantFromNow: number, what: string): void {
  const d = at - Date.now();
  assert.ok(
    d <= wantFromNow + 50 && d >= wantFromNow - 1_500,
    `${what}: ${d} ms from now, want ~${wantFromNow}`,
  );
}

describe("expire", () => {
  it("no tokens: now + period; a later requested time is brought down to it", async () => {
    near(await expiresAt({ periodMs: 60_000 }), 60_000, "no request");
    near(await expiresAt({ periodMs: 60_000, requestedMs: Date.now() + 3_600_000 }), 60_000, "1 h asked");
  });

  it("an earlier requested time is kept", async () => {
    const requested = Date.now() + 10_000;
    assert.equal(await expiresAt({ requestedMs: requested, md: await callerToken(600_000) }), requested);
  });

  it("our own token's expiry caps it", async () => {
    near(
      await expiresAt({ ownLifetimeMs: 20_000, md: await callerToken(600_000) }),
      20_000,
      "own token 20 s",
    );
  });

  it("the caller's token expiry (nsm-client-token-expires) caps it", async () => {
    near(await expiresAt({ md: await callerToken(15_000) }), 15_000, "caller token 15 s");
  });

  it("the -expires header is what counts, as upstream reads it; the token's exp without one", async () => {
    const t = await generateToken(caller, [self.spiffeId], 600_000);
    const md = new Metadata();
    md.set(tokenKey, t.token);
    md.set("nsm-client-token-expires", formatRfc3339Nano(new Date(Date.now() + 12_000)));
    near(await expiresAt({ md }), 12_000, "header 12 s");
    const short = await generateToken(caller, [self.spiffeId], 9_000);
    const bare = new Metadata();
    bare.set(tokenKey, short.token);
    near(await expiresAt({ md: bare }), 9_000, "exp 9 s, no header");
  });

  it("the period wins when it is the earliest", async () => {
    near(
      await expiresAt({ periodMs: 5_000, ownLifetimeMs: 20_000, md: await callerToken(15_000) }),
      5_000,
      "period 5 s",
    );
  });
});

describe("setpayload", () => {
  it("an empty payload is IP; another is kept", async () => {
    const chain = nsRegistryChain([setPayload()]);
    const ctx = CallContext.background(rootLogger);
    assert.equal((await chain.register(service({ name: "a" }), ctx)).payload, "IP");
    assert.equal(
      (await chain.register(service({ name: "b", payload: "ETHERNET" }), ctx)).payload,
      "ETHERNET",
    );
  });
});

describe("validate", () => {
  const ctx = CallContext.background(rootLogger);
  it("Unregister of the empty name goes through (a no-op at the store, as upstream), Register does not", async () => {
    const nse = nseRegistryChain([validateNSE()]);
    const ns = nsRegistryChain([validateNS()]);
    await nse.unregister(endpoint({}), ctx);
    await ns.unregister(service({}), ctx);
    await assert.rejects(async () => nse.register(endpoint({}), ctx), StatusError);
    await assert.rejects(async () => ns.register(service({}), ctx), StatusError);
  });
});
