// authorize (client side, as the NSC runs it): the response passes the client policies — every token valid,
// unexpired and chained, the next hop's token signed by the key of the certificate that server presented —
// or it is closed again downstream and the Request fails with PERMISSION_DENIED.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Connection } from "../../api/connection.js";
import { chain, element, type NetworkServiceNext } from "../../core/chain.js";
import { CallContext } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { rootLogger } from "../../core/log.js";
import { msToTimestamp } from "../../core/time.js";
import { peerCert, type PeerCert } from "../../security/caller.js";
import { TrustDomainCa } from "../../security/ca.js";
import { generatedIdentity, type Identity } from "../../security/identity.js";
import type { Policy, PolicyInput } from "../../security/policy.js";
import { generateToken } from "../../security/token.js";
import { setClientUrl } from "../clienturl/clienturl.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { authorizeClient, type AuthorizeClientOptions } from "./client.js";

const url = "tcp://10.0.0.1:5001";
let nsc: Identity;
let nsmgr: Identity;
let nse: Identity;
let nsmgrCert: PeerCert;

before(async () => {
  const ca = await TrustDomainCa.create("nsm.test");
  nsc = await ca.issue("spiffe://nsm.test/nsc");
  nsmgr = await ca.issue("spiffe://nsm.test/nsmgr");
  nse = await ca.issue("spiffe://nsm.test/nse");
  nsmgrCert = peerCert(new X509Certificate(nsmgr.certificatePem ?? "").raw) as PeerCert;
});

/** The response path of nsc → nsmgr → nse as the nsc sees it (index 0); `nextSigner` signs the nsmgr's token. */
async function response(nextSigner: Identity = nsmgr, expiredNse = false): Promise<Connection> {
  const seg = async (name: string, id: Identity, aud: Identity, past = false) => {
    const t = await generateToken(
      id,
      [aud.spiffeId],
      60_000,
      undefined,
      past ? new Date(Date.now() - 3_600_000) : undefined,
    );
    return {
      name,
      id: `${name}-id`,
      token: t.token,
      expires: msToTimestamp(t.expires.getTime()),
      metrics: {},
    };
  };
  return {
    ...emptyConnection(),
    id: "nsc-id",
    networkService: "s",
    path: {
      index: 0,
      pathSegments: [
        await seg("nsc", nsc, nsmgr),
        await seg("nsmgr", nextSigner, nse),
        await seg("nse", nse, nsmgr, expiredNse),
      ],
    },
  };
}

interface Client {
  chain: NetworkServiceNext;
  closed: Connection[];
  asked: string[];
}

/** authorize client → a fake server at `url` answering `answer`, recording the Closes it gets. */
function client(
  answer: () => Promise<Connection>,
  opts: Partial<AuthorizeClientOptions> = {},
  closeFails = false,
): Client {
  const closed: Connection[] = [];
  const asked: string[] = [];
  return {
    closed,
    asked,
    chain: chain([
      authorizeClient({
        insecure: false,
        peerOf: (u) => {
          asked.push(u);
          return u === url ? nsmgrCert : undefined;
        },
        ...opts,
      }),
      element(
        "server",
        (_r, ctx) => {
          setClientUrl(ctx, url);
          return answer();
        },
        (c) => {
          closed.push(c);
          return closeFails ? Promise.reject(new StatusError(status.UNAVAILABLE, "gone")) : Promise.resolve();
        },
      ),
    ]),
  };
}

const ctx = (): CallContext => new CallContext(rootLogger, new AbortController().signal);
const request = (c: Client): Promise<Connection> =>
  c.chain.request({ connection: { ...emptyConnection(), id: "nsc-id" }, mechanismPreferences: [] }, ctx());

function isDenied(...parts: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.PERMISSION_DENIED, err.message);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  };
}

describe("authorize client", () => {
  it("accepts a response whose next token is signed by the server's certificate key", async () => {
    const resp = await response();
    const c = client(() => Promise.resolve(resp));
    assert.equal(await request(c), resp);
    assert.deepEqual(c.asked, [url], "the key of the server at the request's URL");
    assert.deepEqual(c.closed, []);
  });

  it("refuses a response whose next token another key signed, and closes it downstream", async () => {
    // A hop calling itself the nsmgr, but not holding the nsmgr certificate's key.
    const impostor: Identity = { ...generatedIdentity("nsmgr", "nsm.test"), spiffeId: nsmgr.spiffeId };
    const resp = await response(impostor);
    const c = client(() => Promise.resolve(resp));
    await assert.rejects(
      request(c),
      isDenied("next_token_signed", "segment 1 (nsmgr)", "server's certificate key"),
    );
    assert.equal(c.closed.length, 1, "the refused connection is closed again");
    assert.equal(c.closed[0], resp);
  });

  it("the policy error surfaces even when the Close of the refused connection fails", async () => {
    const impostor: Identity = { ...nse, spiffeId: nsmgr.spiffeId };
    const resp = await response(impostor);
    const c = client(() => Promise.resolve(resp), {}, true);
    await assert.rejects(request(c), isDenied("next_token_signed"));
    assert.equal(c.closed.length, 1);
  });

  it("checks the whole response path: an expired token after the server's is refused too", async () => {
    const resp = await response(nsmgr, true);
    const c = client(() => Promise.resolve(resp));
    await assert.rejects(request(c), isDenied("tokens_expired", "segment 2 (nse)"));
    assert.equal(c.closed.length, 1);
  });

  it("secure mode without a known server certificate: refused and closed", async () => {
    const resp = await response();
    const c = client(() => Promise.resolve(resp), { peerOf: () => undefined });
    await assert.rejects(request(c), isDenied("next_token_signed", "no TLS certificate"));
    assert.equal(c.closed.length, 1);
  });

  it("insecure mode: no certificate to verify with, the other policies still apply", async () => {
    const impostor = generatedIdentity("nsmgr", "nsm.test");
    const c = client(async () => response(impostor), { insecure: true, peerOf: () => undefined });
    await request(c);
    assert.deepEqual(c.closed, []);
    const stale = client(async () => response(impostor, true), { insecure: true, peerOf: () => undefined });
    await assert.rejects(request(stale), isDenied("tokens_expired"));
    assert.equal(stale.closed.length, 1);
  });

  it("custom policies see the server's identity and key; their denial closes the connection", async () => {
    const seen: PolicyInput[] = [];
    const onlyNse: Policy = {
      name: "endpoint_allowed",
      check: (input) => {
        seen.push(input);
        const last = input.path.pathSegments.at(-1)?.name;
        if (last !== "nse-2")
          throw new StatusError(
            status.PERMISSION_DENIED,
            `no sufficient privileges: endpoint_allowed: ${last ?? ""}`,
          );
      },
    };
    const resp = await response();
    const c = client(() => Promise.resolve(resp), { policies: [onlyNse] });
    await assert.rejects(request(c), isDenied("endpoint_allowed: nse"));
    assert.equal(c.closed.length, 1);
    assert.equal(seen[0]?.peerId, nsmgr.spiffeId);
    assert.ok(seen[0]?.peerKey?.equals(nsmgr.publicKey));
    assert.equal(seen[0]?.insecure, false);
  });

  it("a failed Request is not closed by authorize, a Close passes through", async () => {
    const c = client(() => Promise.reject(new StatusError(status.UNAVAILABLE, "down")));
    await assert.rejects(
      request(c),
      (e: unknown) => e instanceof StatusError && e.code === status.UNAVAILABLE,
    );
    assert.deepEqual(c.closed, []);
    const resp = await response();
    await c.chain.close(resp, ctx());
    assert.deepEqual(c.closed, [resp]);
  });
});
