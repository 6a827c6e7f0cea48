// Policies (spec §3, upstream sdk pkg/tools/opa/policies) over paths built the way updatepath/updatetoken build
// them: segment i's token is signed by hop i with aud = hop i+1, and a server's own segment token has aud = its
// caller. Also the Policy lists the authorize elements run, with custom policies added.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Path, PathSegment } from "../api/connection.js";
import { StatusError } from "../core/errors.js";
import { msToTimestamp } from "../core/time.js";
import { generatedIdentity, type Identity } from "./identity.js";
import {
  checkPolicies,
  clientPolicyList,
  nextTokenSigned,
  prevTokenSigned,
  registryClientAllowed,
  serverPolicyList,
  tokensChained,
  tokensExpired,
  tokensValid,
  type Policy,
  type PolicyInput,
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
  signer: Identity = id(i),
): Promise<PathSegment> {
  const t = await generateToken(signer, aud ? [aud.spiffeId] : [], lifetimeMs, undefined, now);
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
  const hourAgo = (): Date => new Date(Date.now() - 3_600_000);

  it("passes live tokens and fails an expired one, naming it", async () => {
    const p = await serverPath(2);
    tokensExpired(p);
    const old = await segment(1, id(2), hourAgo(), 60_000);
    const expired = withToken(p, 1, old.token);
    assert.throws(
      () => tokensExpired(expired),
      isDenied("tokens_expired", "segment 1 (nsmgr)", "expired at"),
    );
    assert.throws(() => tokensExpired(expired, new Date(), "all"), isDenied("tokens_expired", "segment 1"));
    // Checked against `now`: the path is fine an hour ago, stale in a day.
    tokensExpired(p, hourAgo());
    assert.throws(() => tokensExpired(p, new Date(Date.now() + 86_400_000)), isDenied("tokens_expired"));
  });

  it("checks every segment in scope (as upstream): an expired token before the caller's fails", async () => {
    const p = await serverPath(3);
    const stale = withToken(p, 0, (await segment(0, id(1), hourAgo(), 60_000)).token);
    assert.throws(() => tokensExpired(stale), isDenied("tokens_expired", "segment 0 (nsc)"));
    assert.throws(() => tokensExpired(stale, new Date(), "all"), isDenied("segment 0 (nsc)"));
    // Scope "left" stops at index: an expired segment after it does not count.
    const later = withToken({ ...p, index: 1 }, 3, (await segment(3, id(2), hourAgo(), 60_000)).token);
    tokensExpired(later);
    assert.throws(() => tokensExpired(later, new Date(), "all"), isDenied("segment 3 (nse)"));
  });

  it("callerOnly (a Close): only the caller's segment (index-1) and this hop's own are checked", async () => {
    const p = await serverPath(3); // index 3: caller at 2
    const stale0 = withToken(p, 0, (await segment(0, id(1), hourAgo(), 60_000)).token);
    const stale1 = withToken(stale0, 1, (await segment(1, id(2), hourAgo(), 60_000)).token);
    tokensExpired(stale1, new Date(), "left", true);
    assert.throws(() => tokensExpired(stale1, new Date(), "left", false), isDenied("segment 0 (nsc)"));
    const callerStale = withToken(p, 2, (await segment(2, id(3), hourAgo(), 60_000)).token);
    assert.throws(
      () => tokensExpired(callerStale, new Date(), "left", true),
      isDenied("tokens_expired", "segment 2 (forwarder)"),
    );
    const ownStale = withToken(p, 3, (await segment(3, id(2), hourAgo(), 60_000)).token);
    assert.throws(
      () => tokensExpired(ownStale, new Date(), "left", true),
      isDenied("tokens_expired", "segment 3 (nse)"),
    );
    // A token without exp fails in any mode.
    const noExp = `${Buffer.from('{"alg":"ES256"}').toString("base64url")}.${Buffer.from(
      JSON.stringify({ sub: id(2).spiffeId, aud: [id(3).spiffeId] }),
    ).toString("base64url")}.c2ln`;
    assert.throws(
      () => tokensExpired(withToken(p, 2, noExp), new Date(), "left", true),
      isDenied("segment 2 (forwarder)", "no exp claim"),
    );
  });

  it("callerOnly at index 0 checks the own segment only", async () => {
    const p = await serverPath(0);
    tokensExpired(p, new Date(), "left", true);
    const stale = withToken(p, 0, (await segment(0, undefined, hourAgo(), 60_000)).token);
    assert.throws(() => tokensExpired(stale, new Date(), "left", true), isDenied("segment 0 (nsc)"));
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
    const broken = withToken(p, 0, stray.token);
    const why = isDenied(
      "tokens_chained",
      "segment 0 (nsc)",
      "spiffe://nsm-ts.local/nse",
      "spiffe://nsm-ts.local/nsmgr",
    );
    assert.throws(() => tokensChained(broken), why);
    // A wrong aud never passes, not even where a missing one would.
    assert.throws(() => tokensChained(broken, "left", true), why);
  });

  it("a token without aud breaks the chain (as upstream) unless allowMissingAud", async () => {
    const p = await serverPath(2);
    const noAud = withToken(p, 1, (await segment(1, undefined)).token);
    assert.throws(
      () => tokensChained(noAud),
      isDenied("tokens_chained", "segment 1 (nsmgr)", "aud []", "spiffe://nsm-ts.local/forwarder"),
    );
    assert.throws(() => tokensChained(noAud, "all"), isDenied("tokens_chained", "segment 1 (nsmgr)"));
    tokensChained(noAud, "left", true);
    // The last segment in scope has nobody after it: its aud is not checked.
    tokensChained(withToken(p, 2, (await segment(2, undefined)).token));
  });

  it("only checks pairs inside the scope", async () => {
    const p = await responsePath(1);
    const broken = withToken(p, 2, (await segment(2, id(0))).token); // forwarder → not the nse
    tokensChained(broken);
    assert.throws(() => tokensChained(broken, "all"), isDenied("segment 2 (forwarder)"));
  });
});

describe("prevTokenSigned", () => {
  it("the caller's segment verifies with the caller's certificate key and names the caller", async () => {
    const p = await serverPath(2);
    await prevTokenSigned(p, id(1).publicKey, id(1).spiffeId);
    await assert.rejects(
      prevTokenSigned(p, id(0).publicKey, id(1).spiffeId),
      isDenied("prev_token_signed", "segment 1 (nsmgr)", "caller's certificate key", "does not verify"),
    );
  });

  it("refuses a token whose sub is not the caller's certificate identity", async () => {
    const p = await serverPath(2);
    // The caller's token is correctly signed, but the caller is someone else (another certificate, same key
    // in this test, so only the identity check can refuse it).
    await assert.rejects(
      prevTokenSigned(p, id(1).publicKey, "spiffe://nsm-ts.local/intruder"),
      isDenied(
        "prev_token_signed",
        "segment 1 (nsmgr)",
        'sub "spiffe://nsm-ts.local/nsmgr"',
        'caller\'s identity "spiffe://nsm-ts.local/intruder"',
      ),
    );
    // A caller signing with its own key but claiming another sub in its token.
    const liar: Identity = { ...id(1), spiffeId: "spiffe://nsm-ts.local/admin" };
    const lying = withToken(p, 1, (await segment(1, id(2), undefined, undefined, liar)).token);
    await assert.rejects(
      prevTokenSigned(lying, id(1).publicKey, id(1).spiffeId),
      isDenied("prev_token_signed", 'sub "spiffe://nsm-ts.local/admin"'),
    );
  });

  it("fails without a previous segment or token", async () => {
    await assert.rejects(
      prevTokenSigned(await serverPath(0), id(0).publicKey, id(0).spiffeId),
      isDenied("no previous segment"),
    );
    await assert.rejects(
      prevTokenSigned({ index: 0, pathSegments: [] }, id(0).publicKey, "x"),
      isDenied("index 0"),
    );
    await assert.rejects(
      prevTokenSigned(withToken(await serverPath(2), 1, ""), id(1).publicKey, id(1).spiffeId),
      isDenied("prev_token_signed", "segment 1 (nsmgr)", "no token"),
    );
  });

  it("a tampered caller token fails its signature", async () => {
    const p = await serverPath(2);
    const [h, , s] = (p.pathSegments[1]?.token ?? "").split(".");
    const body = Buffer.from(
      JSON.stringify({ sub: id(1).spiffeId, aud: [id(3).spiffeId], exp: 4e9 }),
    ).toString("base64url");
    await assert.rejects(
      prevTokenSigned(withToken(p, 1, `${h}.${body}.${s}`), id(1).publicKey, id(1).spiffeId),
      isDenied("segment 1 (nsmgr)", "does not verify"),
    );
  });
});

describe("nextTokenSigned", () => {
  it("the token after the client's index verifies with the server's key", async () => {
    const p = await responsePath(0);
    await nextTokenSigned(p, id(1).publicKey);
    await assert.rejects(
      nextTokenSigned(p, id(2).publicKey),
      isDenied("next_token_signed", "segment 1 (nsmgr)", "server's certificate key"),
    );
    await assert.rejects(
      nextTokenSigned({ ...p, index: 3 }, id(3).publicKey),
      isDenied("no segment after index 3"),
    );
  });
});

/** A PolicyInput for the server at `path.index`, called by hop index-1 under mTLS. */
function serverInput(path: Path, extra: Partial<PolicyInput> = {}): PolicyInput {
  const caller = id(path.index - 1);
  return {
    path,
    peerId: caller.spiffeId,
    peerKey: caller.publicKey,
    insecure: false,
    now: new Date(),
    ...extra,
  };
}

describe("serverPolicyList", () => {
  it("is upstream's server set, in order", () => {
    assert.deepEqual(
      serverPolicyList.map((p) => p.name),
      ["tokens_valid", "tokens_expired", "tokens_chained", "prev_token_signed"],
    );
  });

  it("passes a well-formed path under mTLS and stops at the first failing rule", async () => {
    const p = await serverPath(3);
    await checkPolicies(serverPolicyList, serverInput(p));
    await assert.rejects(
      checkPolicies(serverPolicyList, serverInput(withToken(p, 1, ""))),
      isDenied("tokens_valid"),
    );
    await assert.rejects(
      checkPolicies(serverPolicyList, serverInput(p, { now: new Date(Date.now() + 86_400_000) })),
      isDenied("tokens_expired"),
    );
    const noAud = withToken(p, 0, (await segment(0, undefined)).token);
    await assert.rejects(checkPolicies(serverPolicyList, serverInput(noAud)), isDenied("tokens_chained"));
    await assert.rejects(
      checkPolicies(serverPolicyList, serverInput(p, { peerKey: id(1).publicKey })),
      isDenied("prev_token_signed", "does not verify"),
    );
    await assert.rejects(
      checkPolicies(serverPolicyList, serverInput(p, { peerId: id(1).spiffeId })),
      isDenied("prev_token_signed", "not the caller's identity"),
    );
  });

  it("secure mode without a peer certificate is refused by prev_token_signed", async () => {
    const p = await serverPath(3);
    const { peerKey: _k, ...noKey } = serverInput(p);
    void _k;
    await assert.rejects(
      checkPolicies(serverPolicyList, noKey),
      isDenied("prev_token_signed", "presented no TLS certificate"),
    );
  });

  it("insecure: signatures are not checked and a missing aud is tolerated; a wrong aud is not", async () => {
    const p = await serverPath(3);
    const noAud = withToken(p, 1, (await segment(1, undefined)).token);
    const insecure = (path: Path): PolicyInput => ({
      path,
      peerId: id(2).spiffeId,
      insecure: true,
      now: new Date(),
    });
    await checkPolicies(serverPolicyList, insecure(noAud));
    // Signed with a key nobody knows: nothing to verify with, insecure mode authenticates nobody; but the
    // token's sub must still chain.
    const other = withToken(
      p,
      2,
      (await segment(2, id(3), undefined, undefined, generatedIdentity("x"))).token,
    );
    await assert.rejects(checkPolicies(serverPolicyList, insecure(other)), isDenied("tokens_chained"));
    const resigned: Identity = { ...generatedIdentity("y"), spiffeId: id(2).spiffeId };
    await checkPolicies(
      serverPolicyList,
      insecure(withToken(p, 2, (await segment(2, id(3), undefined, undefined, resigned)).token)),
    );
    const stray = withToken(p, 0, (await segment(0, id(3))).token);
    await assert.rejects(checkPolicies(serverPolicyList, insecure(stray)), isDenied("tokens_chained"));
    // The secure counterpart of the missing aud fails.
    await assert.rejects(checkPolicies(serverPolicyList, serverInput(noAud)), isDenied("tokens_chained"));
  });

  it("a Close checks only the caller's and the own token for expiry", async () => {
    const p = await serverPath(3);
    const stale = withToken(p, 0, (await segment(0, id(1), new Date(Date.now() - 3_600_000), 60_000)).token);
    await assert.rejects(checkPolicies(serverPolicyList, serverInput(stale)), isDenied("tokens_expired"));
    await assert.rejects(
      checkPolicies(serverPolicyList, serverInput(stale, { close: false })),
      isDenied("tokens_expired", "segment 0 (nsc)"),
    );
    await checkPolicies(serverPolicyList, serverInput(stale, { close: true }));
  });
});

describe("clientPolicyList", () => {
  it("is upstream's client set, in order", () => {
    assert.deepEqual(
      clientPolicyList.map((p) => p.name),
      ["tokens_valid", "tokens_expired", "tokens_chained", "next_token_signed"],
    );
  });

  it("checks the whole response path and the next token's signature", async () => {
    const p = await responsePath(0);
    const input = (path: Path, extra: Partial<PolicyInput> = {}): PolicyInput => ({
      path,
      peerId: id(1).spiffeId,
      peerKey: id(1).publicKey,
      insecure: false,
      now: new Date(),
      ...extra,
    });
    await checkPolicies(clientPolicyList, input(p));
    const stray = await segment(2, id(0)); // forwarder token not addressed to the nse
    await assert.rejects(
      checkPolicies(clientPolicyList, input(withToken(p, 2, stray.token))),
      isDenied("tokens_chained", "segment 2 (forwarder)"),
    );
    const stale = withToken(p, 3, (await segment(3, id(2), new Date(Date.now() - 3_600_000), 60_000)).token);
    await assert.rejects(
      checkPolicies(clientPolicyList, input(stale)),
      isDenied("tokens_expired", "segment 3 (nse)"),
    );
    await assert.rejects(
      checkPolicies(clientPolicyList, input(p, { peerKey: id(2).publicKey })),
      isDenied("next_token_signed", "segment 1 (nsmgr)"),
    );
    const { peerKey: _k, ...noKey } = input(p);
    void _k;
    await assert.rejects(checkPolicies(clientPolicyList, noKey), isDenied("next_token_signed", "no TLS"));
    await checkPolicies(clientPolicyList, { ...noKey, insecure: true });
  });
});

describe("custom policies", () => {
  it("a policy added to the list runs with the input and its denial surfaces", async () => {
    const p = await serverPath(3);
    const seen: PolicyInput[] = [];
    let allow = true;
    const onlyNsmgr: Policy = {
      name: "only_via_nsmgr",
      check: (input) => {
        seen.push(input);
        if (!allow)
          throw new StatusError(status.PERMISSION_DENIED, "no sufficient privileges: only_via_nsmgr");
      },
    };
    const list = [...serverPolicyList, onlyNsmgr];
    const input = serverInput(p);
    await checkPolicies(list, input);
    assert.equal(seen.length, 1);
    assert.equal(seen[0], input, "the policy sees the input as given");
    allow = false;
    await assert.rejects(checkPolicies(list, input), isDenied("only_via_nsmgr"));
    // After a failing default the custom one is not reached.
    await assert.rejects(checkPolicies(list, serverInput(withToken(p, 1, ""))), isDenied("tokens_valid"));
    assert.equal(seen.length, 2);
  });

  it("an async policy is awaited, and one put first stops the defaults", async () => {
    const ran: string[] = [];
    const first: Policy = {
      name: "first",
      check: async () => {
        await new Promise((r) => setTimeout(r, 5));
        ran.push("first");
        throw new StatusError(status.PERMISSION_DENIED, "no sufficient privileges: first");
      },
    };
    const spy: Policy = { name: "spy", check: () => void ran.push("spy") };
    await assert.rejects(
      checkPolicies([first, spy, ...serverPolicyList], serverInput(await serverPath(1))),
      isDenied("first"),
    );
    assert.deepEqual(ran, ["first"]);
  });

  it("an empty list allows anything", async () => {
    await checkPolicies([], { path: { index: 0, pathSegments: [] }, insecure: false, now: new Date() });
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
