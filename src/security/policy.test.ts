// Default policies (spec §5) over paths built the way updatepath/updatetoken build them: segment i's token is
// signed by hop i with aud = hop i+1, and a server's own segment token has aud = its caller.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Path, PathSegment } from "../api/connection.js";
import { StatusError } from "../core/errors.js";
import { msToTimestamp } from "../core/time.js";
import { generatedIdentity, type Identity } from "./identity.js";
import {
  clientPolicies,
  nextTokenSigned,
  prevTokenSigned,
  registryClientAllowed,
  serverPolicies,
  tokensChained,
  tokensExpired,
  tokensValid,
  type PolicyPath,
} from "./policy.js";
import { generateToken } from "./token.js";

const names = ["nsc", "nsmgr", "forwarder", "nse"];
const ids: Identity[] = names.map((n) => generatedIdentity(n));
const id = (i: number): Identity => ids[i] as Identity;

async function segment(
  i: number,
  aud: Identity | undefined,
  now?: Date,
  lifetimeMs?: number,
): Promise<PathSegment> {
  const t = await generateToken(id(i), aud ? [aud.spiffeId] : [], lifetimeMs, undefined, now);
  return {
    name: names[i] ?? "",
    id: `conn-${i}`,
    token: t.token,
    expires: msToTimestamp(t.expires.getTime()),
    metrics: {},
  };
}

/** The path a server at `index` sees: 0..index-1 chained forward, its own segment aud = its caller. */
async function serverPath(index: number): Promise<Path> {
  const segs: PathSegment[] = [];
  for (let i = 0; i < index; i++) segs.push(await segment(i, id(i + 1)));
  segs.push(await segment(index, index > 0 ? id(index - 1) : undefined));
  return { index, pathSegments: segs };
}

/** A full response path (after the endpoint), as a client at `index` receives it. */
async function responsePath(index: number): Promise<Path> {
  const p = await serverPath(names.length - 1);
  return { ...p, index };
}

function tokenAt(p: PolicyPath, i: number): string {
  return p.pathSegments[i]?.token ?? "";
}

function withToken(p: Path, i: number, token: string): Path {
  return { ...p, pathSegments: p.pathSegments.map((s, j) => (j === i ? { ...s, token } : s)) };
}

function isDenied(...parts: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.PERMISSION_DENIED);
    for (const p of ["no sufficient privileges", ...parts])
      assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  };
}

// A connection Path is a PolicyPath (compile-time check).
const _pathFits: PolicyPath = { index: 0, pathSegments: [] } satisfies Path;
void _pathFits;

describe("tokensValid", () => {
  it("passes an empty path and a well-formed one", async () => {
    tokensValid({ index: 0, pathSegments: [] });
    tokensValid(await serverPath(2));
  });

  it("fails on a missing or malformed token in 0..index, naming the segment", async () => {
    const p = await serverPath(2);
    assert.throws(
      () => tokensValid(withToken(p, 1, "")),
      isDenied("tokens_valid", "segment 1 (nsmgr)", "no token"),
    );
    assert.throws(
      () => tokensValid(withToken(p, 0, "a.b")),
      isDenied("tokens_valid", "segment 0 (nsc)", "not a JWT"),
    );
  });

  it("ignores segments after index unless the scope is 'all'", async () => {
    const p = await responsePath(1);
    const broken = withToken(p, 3, "junk");
    tokensValid(broken);
    assert.throws(() => tokensValid(broken, "all"), isDenied("segment 3 (nse)"));
  });
});

describe("tokensExpired", () => {
  it("passes live tokens and fails an expired one, naming it", async () => {
    const p = await serverPath(2);
    tokensExpired(p);
    const old = await segment(1, id(2), new Date(Date.now() - 3_600_000), 60_000);
    const expired = withToken(p, 1, old.token);
    assert.throws(
      () => tokensExpired(expired),
      isDenied("tokens_expired", "segment 1 (nsmgr)", "expired at"),
    );
    assert.throws(() => tokensExpired(expired, new Date(), "all"), isDenied("tokens_expired", "segment 1"));
    // Checked against `now`: the path is fine an hour ago, stale in a day.
    tokensExpired(p, new Date(Date.now() - 3_600_000));
    assert.throws(
      () => tokensExpired(p, new Date(Date.now() + 86_400_000)),
      isDenied("tokens_expired", "segment 1"),
    );
  });

  it("server side: an expired token before the caller's does not fail (a Close after the client vanished)", async () => {
    const p = await serverPath(2);
    const old = await segment(0, id(1), new Date(Date.now() - 3_600_000), 60_000);
    const stale = withToken(p, 0, old.token);
    tokensExpired(stale);
    assert.throws(
      () => tokensExpired(stale, new Date(), "all"),
      isDenied("tokens_expired", "segment 0 (nsc)"),
    );
  });
});

describe("tokensChained", () => {
  it("passes a chained path and paths shorter than 2", async () => {
    tokensChained(await serverPath(3));
    tokensChained(await serverPath(0));
    tokensChained({ index: 0, pathSegments: [] });
  });

  it("fails when token[i].aud does not contain token[i+1].sub", async () => {
    const p = await serverPath(2);
    const stray = await segment(0, id(3)); // nsc's token addressed to the nse, presented to the nsmgr
    assert.throws(
      () => tokensChained(withToken(p, 0, stray.token)),
      isDenied(
        "tokens_chained",
        "segment 0 (nsc)",
        "spiffe://nsm-ts.local/nse",
        "spiffe://nsm-ts.local/nsmgr",
      ),
    );
  });

  it("does not chain-check a token without aud (its issuer did not know its peer yet)", async () => {
    const p = await serverPath(2);
    const noAud = await segment(1, undefined);
    assert.doesNotThrow(() => tokensChained(withToken(p, 1, noAud.token)));
  });
});

describe("prevTokenSigned", () => {
  it("under mTLS: the caller's segment verifies with the caller's certificate key", async () => {
    const p = await serverPath(2);
    await prevTokenSigned(p, id(1).publicKey);
    await assert.rejects(
      prevTokenSigned(p, id(0).publicKey),
      isDenied("prev_token_signed", "segment 1 (nsmgr)", "caller's certificate key", "does not verify"),
    );
  });

  it("fails without a previous segment", async () => {
    await assert.rejects(
      prevTokenSigned(await serverPath(0), "embedded", "x"),
      isDenied("no previous segment"),
    );
    await assert.rejects(
      prevTokenSigned({ index: 0, pathSegments: [] }, id(0).publicKey),
      isDenied("index 0"),
    );
  });

  it("insecure: verifies with the embedded jwk, which must be the presented token's key", async () => {
    const p = await serverPath(2);
    const presented = tokenAt(p, 1);
    await prevTokenSigned(p, "embedded", presented);
    // Another token of the same caller key is fine (e.g. the previous refresh's).
    await prevTokenSigned(p, "embedded", (await segment(1, id(2))).token);

    // The caller presents a token of another key than the one that signed its path segment.
    const impostor = (await generateToken(generatedIdentity("nsmgr"), [id(2).spiffeId])).token;
    await assert.rejects(
      prevTokenSigned(p, "embedded", impostor),
      isDenied("prev_token_signed", "segment 1 (nsmgr)", "another key than the token the caller presented"),
    );
    await assert.rejects(prevTokenSigned(p, "embedded"), isDenied("presented no nsm-client-token"));

    // A tampered segment token fails its own embedded-key signature.
    const [h, , s] = presented.split(".");
    const body = Buffer.from(
      JSON.stringify({ sub: id(1).spiffeId, aud: [id(3).spiffeId], exp: 4e9 }),
    ).toString("base64url");
    await assert.rejects(
      prevTokenSigned(withToken(p, 1, `${h}.${body}.${s}`), "embedded", presented),
      isDenied("segment 1 (nsmgr)", "embedded jwk", "does not verify"),
    );
  });
});

describe("serverPolicies", () => {
  it("passes a well-formed path in both modes and stops at the first failing rule", async () => {
    const p = await serverPath(3);
    await serverPolicies(p, { callerKey: "embedded", presentedToken: tokenAt(p, 2) });
    await serverPolicies(p, { callerKey: id(2).publicKey });
    await assert.rejects(
      serverPolicies(withToken(p, 1, ""), { callerKey: id(2).publicKey }),
      isDenied("tokens_valid"),
    );
    await assert.rejects(
      serverPolicies(p, { callerKey: id(2).publicKey, now: new Date(Date.now() + 86_400_000) }),
      isDenied("tokens_expired"),
    );
    await assert.rejects(serverPolicies(p, { callerKey: id(1).publicKey }), isDenied("prev_token_signed"));
  });
});

describe("nextTokenSigned / clientPolicies", () => {
  it("the token after the client's index verifies with the server's key", async () => {
    const p = await responsePath(0);
    await nextTokenSigned(p, id(1).publicKey);
    await nextTokenSigned(p, "embedded");
    await assert.rejects(
      nextTokenSigned(p, id(2).publicKey),
      isDenied("next_token_signed", "segment 1 (nsmgr)", "server's certificate key"),
    );
    await assert.rejects(
      nextTokenSigned({ ...p, index: 3 }, "embedded"),
      isDenied("no segment after index 3"),
    );
  });

  it("checks the whole response path", async () => {
    const p = await responsePath(0);
    await clientPolicies(p, { serverKey: id(1).publicKey });
    const stray = await segment(2, id(0)); // forwarder token not addressed to the nse
    await assert.rejects(
      clientPolicies(withToken(p, 2, stray.token), { serverKey: id(1).publicKey }),
      isDenied("tokens_chained", "segment 2 (forwarder)"),
    );
  });
});

describe("registryClientAllowed", () => {
  it("allows unknown names and the original registrant only", () => {
    registryClientAllowed("nse-1", "spiffe://x/a");
    registryClientAllowed("nse-1", "spiffe://x/a", []);
    registryClientAllowed("nse-1", "spiffe://x/a", ["spiffe://x/a", "spiffe://x/nsmgr"]);
    assert.throws(
      () => registryClientAllowed("nse-1", "spiffe://x/b", ["spiffe://x/a"]),
      isDenied("registry_client_allowed", '"nse-1"', "spiffe://x/a", "spiffe://x/b", "original registrant"),
    );
  });
});
