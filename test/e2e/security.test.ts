// The attack suite (issue 12): a secure mesh — registry, nsmgr, noop forwarder and icmp-responder NSE, every
// process with an X.509-SVID of one TrustDomainCa (spiffe://nsm.test/<name>) — and the attacks an identity of
// the trust domain, or someone outside it, can try. Each attack must be refused with the code and a message
// that says why, AND change nothing: the victim's connection still refreshes, its registry records keep their
// URL and owner, the nsmgr routes to the real forwarder.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Metadata, credentials, status, type ServiceError } from "@grpc/grpc-js";
import { SignJWT, UnsecuredJWT, importPKCS8 } from "jose";
import {
  MonitorConnectionService,
  type Connection,
  type ConnectionEvent,
  type MonitorScopeSelector,
  type PathSegment,
} from "../../src/api/connection.js";
import { NetworkServiceService, type NetworkServiceRequest } from "../../src/api/networkservice.js";
import type { NetworkService, NetworkServiceEndpoint } from "../../src/api/registry.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity, type Security } from "../../src/components/security.js";
import { GrpcClient } from "../../src/core/client.js";
import { inodeUrlOf } from "../../src/core/netns.js";
import { kernelOffer } from "../../src/networkservice/mechanisms/kernel.js";
import { emptyConnection } from "../../src/networkservice/updatepath/updatepath.js";
import { RegistryClient, endpoint, service } from "../../src/registry/client.js";
import { defaultMaxRegistrationsPerIdentity } from "../../src/registry/memory.js";
import { registryCallMetadata } from "../../src/registry/security.js";
import { TrustDomainCa } from "../../src/security/ca.js";
import type { Identity } from "../../src/security/identity.js";
import { StaticIdentitySource } from "../../src/security/source.js";
import { TestPki, type CaFiles } from "../../src/security/testpki.js";
import { decodeToken, generateToken, tokenMetadata, type GeneratedToken } from "../../src/security/token.js";
import { Mesh } from "../helpers/mesh.js";
import { eventually, sleep } from "../helpers/proc.js";

const td = "nsm.test";
const svc = "secure-svc";
const ownInode = inodeUrlOf("/proc/self/ns/net");

// A second root the mesh also trusts, made with openssl: TrustDomainCa only issues SVIDs (one spiffe:// URI
// SAN, checked), so the certificate without a SPIFFE ID of case 4 comes from this root.
const pki = new TestPki();
let otherRoot: CaFiles;
let ca: TrustDomainCa;
let mesh: Mesh;
let nsmgrUrl: string; // unix socket: where local clients, forwarders and endpoints talk to the nsmgr
let nsmgrTcp: string;
let registryUrl: string;
const id = (name: string): string => `spiffe://${td}/${name}`;

// In-process identities: A is the victim (legitimate client and registrant), B a valid SVID of the trust
// domain that attacks A.
let secA: Security;
let secB: Security;
let clientA: NsmClient;
let connA: Connection;
const opened: { close(): void }[] = [];

/** The nse/fwd registry records as the mesh registered them (url, owner path). */
let baseline: Record<string, { url: string; pathIds: string[] }>;

const codeName = (c: number | undefined): string => (c === undefined ? "none" : (status[c] ?? String(c)));

async function security(name: string): Promise<Security> {
  const s = createSecurity({ name, files: await mesh.svid(name), handshakeTimeoutMs: 3000 });
  opened.push(s);
  return s;
}

/**
 * A second, in-memory SVID for the ID of a mesh component (another certificate of the same identity, as a
 * rotation delivers): its files are the component's own and must not be rewritten.
 */
async function securityAs(name: string): Promise<Security> {
  const s = createSecurity({ name, source: new StaticIdentitySource(await ca.issue(id(name))) });
  opened.push(s);
  return s;
}

/** A raw channel to `url` with `sec`'s credentials (its handshakes tell `sec` who answers there). */
function raw(sec: Security, url: string): GrpcClient {
  const c = new GrpcClient(url, sec.channelOptions(), sec.channelCredentials(url));
  opened.push(c);
  return c;
}

function registryAs(sec: Security, url = registryUrl): RegistryClient {
  const c = new RegistryClient(url, sec.channelCredentials(url), sec.channelOptions());
  opened.push(c);
  return c;
}

/** Registry call metadata of `sec`: its token for `peer` (a SPIFFE ID), a fresh registration path. */
function regMd(sec: Security, peer: string): Promise<Metadata> {
  return registryCallMetadata(sec.sign, undefined, sec.identity.spiffeId.split("/").pop()!, [peer]);
}

/** Registry call metadata carrying a token we made ourselves (forged, unsigned, expired…). */
function regMdWith(token: GeneratedToken, name: string, peer: string): Promise<Metadata> {
  return registryCallMetadata(() => Promise.resolve(token), undefined, name, [peer]);
}

const segment = (name: string, segId: string): PathSegment => ({
  name,
  id: segId,
  token: "",
  expires: undefined,
  metrics: {},
});

/** A first Request of connection `connId` as a client called `name` would send it. */
function requestOf(connId: string, name: string, inodeURL = ownInode): NetworkServiceRequest {
  return {
    connection: {
      ...emptyConnection(),
      id: connId,
      networkService: svc,
      path: { index: 0, pathSegments: [segment(name, connId)] },
    },
    mechanismPreferences: [kernelOffer({ inodeURL })],
  };
}

/** The error an attack ended with; an attack that succeeds fails the case (after `undo` cleans up). */
async function refusal<T>(
  attempt: Promise<T>,
  what: string,
  undo?: (accepted: T) => Promise<unknown>,
): Promise<ServiceError> {
  let accepted: T;
  try {
    accepted = await attempt;
  } catch (e) {
    return e as ServiceError;
  }
  await undo?.(accepted)?.catch(() => undefined);
  assert.fail(`${what} was accepted: ${JSON.stringify(accepted).slice(0, 400)}`);
}

function assertRefused(err: ServiceError, codes: status[], why: RegExp): void {
  assert.ok(
    codes.includes(err.code),
    `code ${codeName(err.code)} (${err.details}), want ${codes.map(codeName).join(" or ")}`,
  );
  assert.match(err.details, why);
}

/** A raw Request as `sec` that must be refused; an accepted one is closed again (as `sec`) before failing. */
async function requestRefused(
  sec: Security,
  req: NetworkServiceRequest,
  md: Metadata,
  what: string,
  url = nsmgrUrl,
): Promise<ServiceError> {
  const g = raw(sec, url);
  return refusal(
    g.unary(NetworkServiceService.request, req, { metadata: md, timeoutMs: 8000 }),
    what,
    async (r) =>
      g.unary(NetworkServiceService.close, r.response, {
        metadata: await sec.callMetadata(undefined, url, g),
      }),
  );
}

/** The connections `sec` sees on `url`'s MonitorConnections (its INITIAL_STATE_TRANSFER). */
async function visibleTo(
  sec: Security,
  url: string,
  selector: MonitorScopeSelector = { pathSegments: [], networkServices: [] },
): Promise<Connection[]> {
  const g = raw(sec, url);
  const s = g.serverStream(MonitorConnectionService.monitorConnections, selector, { timeoutMs: 5000 });
  try {
    for await (const ev of s) return Object.values(ev.connections);
    return [];
  } finally {
    s.cancel();
    g.close();
  }
}

/** The connection at a hop whose first segment is `firstId` (the client's connection id). */
const withFirst = (conns: Connection[], firstId: string): Connection[] =>
  conns.filter((c) => c.path?.pathSegments[0]?.id === firstId);

/** A's connection is still at the nsmgr, and A can refresh it (same addresses, same forwarder and NSE). */
async function victimIntact(): Promise<void> {
  assert.equal(
    withFirst(await visibleTo(secA, nsmgrUrl), connA.id).length,
    1,
    "A's connection is at the nsmgr",
  );
  const again = await clientA.request({ service: svc, id: connA.id });
  assert.deepEqual(again.context?.ipContext?.srcIpAddrs, connA.context?.ipContext?.srcIpAddrs);
  assert.deepEqual(
    again.path!.pathSegments.map((s) => s.name),
    connA.path!.pathSegments.map((s) => s.name),
  );
}

let regA: RegistryClient;

async function recordOf(name: string): Promise<NetworkServiceEndpoint | undefined> {
  return (await regA.findEndpoints({ name }))[0];
}

/** The mesh's own registrations keep their URL and registrant. */
async function registrationsIntact(): Promise<void> {
  for (const [name, want] of Object.entries(baseline)) {
    const got = await recordOf(name);
    assert.ok(got, `${name} is still registered`);
    assert.equal(got.url, want.url, `${name} keeps its URL`);
    assert.deepEqual(got.pathIds, want.pathIds, `${name} keeps its registrant`);
  }
}

/** A unix socket where an attacker "serves": counts every connection anyone makes to it. */
async function trap(name: string): Promise<{ url: string; hits: () => number; close(): void }> {
  const path = join(mesh.dir.path, `${name}.sock`);
  let hits = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    hits++;
    sockets.add(s);
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    url: `unix://${path}`,
    hits: () => hits,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("security: attacks on a secure mesh (issue 12)", { timeout: 120_000 }, () => {
  before(async () => {
    otherRoot = pki.ca("other-root", td);
    ca = await TrustDomainCa.create(td);
    mesh = new Mesh({ ca, extraBundlePem: readFileSync(otherRoot.certFile, "utf8") });
    await mesh.registry();
    registryUrl = mesh.registryUrl;
    const n = await mesh.nsmgr("nsmgr");
    nsmgrUrl = n.url;
    nsmgrTcp = n.publicUrl;
    await Promise.all([mesh.forwarder("fwd", nsmgrUrl), mesh.nse("nse", nsmgrUrl, svc, "169.254.30.0/24")]);
    [secA, secB] = await Promise.all([security("nsc-a"), security("nsc-b")]);
    clientA = new NsmClient({ name: "nsc-a", nsmgrUrl, security: secA });
    regA = registryAs(secA);
    await eventually(
      async () => (await recordOf("fwd")) !== undefined && (await recordOf("nse")) !== undefined,
    );
    baseline = {};
    for (const name of ["fwd", "nse"]) {
      const r = (await recordOf(name))!;
      baseline[name] = { url: r.url, pathIds: r.pathIds };
    }
  });

  after(async () => {
    await clientA?.closeAll().catch(() => undefined);
    for (const o of opened.reverse()) o.close();
    await mesh?.down();
    pki.cleanup();
  });

  it("sanity: a legitimate client connects; every hop signs with its SVID's ID", async () => {
    connA = await clientA.request({ service: svc });
    assert.deepEqual(
      connA.path!.pathSegments.map((s) => decodeToken(s.token).sub),
      ["nsc-a", "nsmgr", "fwd", "nse"].map(id),
    );
    assert.deepEqual(baseline.nse!.pathIds.slice(0, 2), [id("nse"), id("nsmgr")]);
    assert.equal(baseline.nse!.url, nsmgrTcp, "endpoints are registered with the nsmgr's public URL");
    await victimIntact();
  });

  it("1. forged sub: B's SVID with a token claiming to be A → PERMISSION_DENIED (prev_token_signed)", async () => {
    const forged = await generateToken({ ...secB.identity, spiffeId: id("nsc-a") }, [id("nsmgr")]);
    const err = await requestRefused(
      secB,
      requestOf("forged-sub", "nsc-a"),
      tokenMetadata(forged.token, forged.expires),
      "a Request with a forged sub",
    );
    assertRefused(err, [status.PERMISSION_DENIED], /prev_token_signed.*is not the caller's identity/);
    assert.match(err.details, new RegExp(`"${id("nsc-a")}" is not the caller's identity "${id("nsc-b")}"`));

    // The same forgery at the registry, to take over A's endpoint record "nse"'s name.
    const forgedReg = await generateToken({ ...secB.identity, spiffeId: id("nse") }, [id("registry")]);
    const regErr = await refusal(
      registryAs(secB).registerEndpoint(
        endpoint({ name: "nse", networkServiceNames: [svc], url: "tcp://127.0.0.1:9" }),
        { metadata: await regMdWith(forgedReg, "nse", id("registry")) },
      ),
      "a Register with a forged sub",
    );
    assertRefused(regErr, [status.PERMISSION_DENIED], /sub "spiffe:\/\/nsm\.test\/nse" is not the caller's/);

    assert.deepEqual(withFirst(await visibleTo(secB, nsmgrUrl), "forged-sub"), []);
    await victimIntact();
    await registrationsIntact();
  });

  it("2. alg:none (unsigned) token → PERMISSION_DENIED / UNAUTHENTICATED: not signed", async () => {
    const unsigned = (sub: string, aud: string): GeneratedToken => {
      const exp = Math.floor(Date.now() / 1000) + 300;
      const token = new UnsecuredJWT({})
        .setSubject(sub)
        .setAudience([aud])
        .setIssuedAt()
        .setExpirationTime(exp);
      return { token: token.encode(), expires: new Date(exp * 1000) };
    };
    const t = unsigned(id("nsc-b"), id("nsmgr"));
    assert.equal(t.token.split(".")[2], "", "an unsecured JWS has an empty signature");
    const err = await requestRefused(
      secB,
      requestOf("alg-none", "nsc-b"),
      tokenMetadata(t.token, t.expires),
      "a Request with an alg:none token",
    );
    assertRefused(
      err,
      [status.PERMISSION_DENIED, status.UNAUTHENTICATED],
      /prev_token_signed.*not signed by/,
    );

    const r = unsigned(id("nsc-b"), id("registry"));
    const regErr = await refusal(
      registryAs(secB).registerEndpoint(endpoint({ name: "alg-none-nse", url: "tcp://127.0.0.1:9" }), {
        metadata: await regMdWith(r, "nsc-b", id("registry")),
      }),
      "a Register with an alg:none token",
    );
    assertRefused(regErr, [status.UNAUTHENTICATED, status.PERMISSION_DENIED], /not signed by the caller's/);

    assert.deepEqual(withFirst(await visibleTo(secB, nsmgrUrl), "alg-none"), []);
    assert.equal(await recordOf("alg-none-nse"), undefined);
    await victimIntact();
    await registrationsIntact();
  });

  it("3. an SVID of another CA of the same trust domain: the TLS handshake fails", async () => {
    // Same trust domain name, different key: the impostor even claims A's ID. It trusts the real bundle, so
    // only the servers' verification can stop it. A refused handshake never reaches gRPC's status layer:
    // grpc-js reports the channel's failure as UNAVAILABLE ("No connection established"), not UNAUTHENTICATED,
    // and cannot say why: Node's TLS server checks the client certificate after the handshake and just
    // destroys the socket, without an alert naming the reason.
    const rogue = await TrustDomainCa.create(td);
    const impostorId: Identity = { ...(await rogue.issue(id("nsc-a"))), caPem: ca.bundlePem };
    const impostor = createSecurity({
      name: "impostor",
      source: new StaticIdentitySource(impostorId),
      handshakeTimeoutMs: 2000,
    });
    opened.push(impostor);
    const token = await generateToken(impostorId, [id("nsmgr")]);
    const started = Date.now();
    for (const url of [nsmgrUrl, nsmgrTcp]) {
      const err = await requestRefused(
        impostor,
        requestOf(`rogue-ca-${url.slice(0, 3)}`, "nsc-a"),
        tokenMetadata(token.token, token.expires),
        `a Request over ${url} with a rogue CA's SVID`,
        url,
      );
      assertRefused(err, [status.UNAVAILABLE], /No connection established|Failed to connect|handshake/);
    }
    const regErr = await refusal(
      registryAs(impostor).registerEndpoint(
        endpoint({ name: "nse", networkServiceNames: [svc], url: "tcp://127.0.0.1:9" }),
        {
          metadata: await regMdWith(await generateToken(impostorId, [id("registry")]), "nse", id("registry")),
        },
      ),
      "a Register with a rogue CA's SVID",
    );
    assertRefused(regErr, [status.UNAVAILABLE], /No connection established|Failed to connect|handshake/);
    assert.ok(Date.now() - started < 10_000, "refused promptly");
    // (The impostor itself accepted the servers' certificates: under TLS 1.3 the client finishes its side of
    // the handshake before the server checks the client's certificate and closes the connection.)
    // Had it got in, its connections would belong to A's ID, so A would see them.
    const seenByA = await visibleTo(secA, nsmgrUrl);
    assert.deepEqual([...withFirst(seenByA, "rogue-ca-uni"), ...withFirst(seenByA, "rogue-ca-tcp")], []);
    await victimIntact();
    await registrationsIntact();
  });

  it("4. a certificate without a SPIFFE ID, from a CA the mesh trusts → UNAUTHENTICATED", async () => {
    const leaf = pki.leaf(otherRoot, "anonymous", { uri: null });
    const key = readFileSync(leaf.keyFile, "utf8");
    const creds = credentials.createSsl(
      Buffer.from(ca.bundlePem),
      Buffer.from(key),
      readFileSync(leaf.certFile),
      {
        checkServerIdentity: () => undefined,
      },
    );
    // Its token claims A's ID, signed with the certificate's own key.
    const exp = Math.floor(Date.now() / 1000) + 300;
    const signed = async (aud: string): Promise<GeneratedToken> => ({
      token: await new SignJWT({})
        .setProtectedHeader({ alg: "ES256", typ: "JWT" })
        .setSubject(id("nsc-a"))
        .setAudience([aud])
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(await importPKCS8(key, "ES256")),
      expires: new Date(exp * 1000),
    });
    const opts = { "grpc.ssl_target_name_override": "nsm" };
    const g = new GrpcClient(nsmgrUrl, opts, creds);
    opened.push(g);
    const t = await signed(id("nsmgr"));
    const err = await refusal(
      g.unary(NetworkServiceService.request, requestOf("no-spiffe-id", "nsc-a"), {
        metadata: tokenMetadata(t.token, t.expires),
        timeoutMs: 5000,
      }),
      "a Request from a certificate without a SPIFFE ID",
    );
    assertRefused(err, [status.UNAUTHENTICATED, status.PERMISSION_DENIED], /no spiffe:\/\/ URI SAN/);

    const reg = new RegistryClient(registryUrl, creds, opts);
    opened.push(reg);
    const regErr = await refusal(
      reg.registerEndpoint(endpoint({ name: "nse", networkServiceNames: [svc], url: "tcp://127.0.0.1:9" }), {
        metadata: await regMdWith(await signed(id("registry")), "nse", id("registry")),
      }),
      "a Register from a certificate without a SPIFFE ID",
    );
    assertRefused(regErr, [status.UNAUTHENTICATED, status.PERMISSION_DENIED], /no spiffe:\/\/ URI SAN/);
    const monErr = await refusal(
      (async () => {
        const s = g.serverStream(
          MonitorConnectionService.monitorConnections,
          { pathSegments: [], networkServices: [] },
          { timeoutMs: 5000 },
        );
        for await (const ev of s) return ev;
        return undefined;
      })(),
      "MonitorConnections from a certificate without a SPIFFE ID",
    );
    assertRefused(monErr, [status.UNAUTHENTICATED, status.PERMISSION_DENIED], /no spiffe:\/\/ URI SAN/);
    await victimIntact();
    await registrationsIntact();
  });

  it("5. an expired token, correctly signed → PERMISSION_DENIED (tokens_expired) / UNAUTHENTICATED", async () => {
    const past = new Date(Date.now() - 5 * 60_000);
    const t = await generateToken(secB.identity, [id("nsmgr")], 60_000, undefined, past);
    assert.ok(t.expires.getTime() < Date.now());
    const err = await requestRefused(
      secB,
      requestOf("expired", "nsc-b"),
      tokenMetadata(t.token, t.expires),
      "a Request with an expired token",
    );
    assertRefused(err, [status.PERMISSION_DENIED], /tokens_expired.*expired at/);

    const r = await generateToken(secB.identity, [id("registry")], 60_000, undefined, past);
    const regErr = await refusal(
      registryAs(secB).registerEndpoint(endpoint({ name: "expired-nse", url: "tcp://127.0.0.1:9" }), {
        metadata: await regMdWith(r, "nsc-b", id("registry")),
      }),
      "a Register with an expired token",
    );
    assertRefused(regErr, [status.UNAUTHENTICATED, status.PERMISSION_DENIED], /expired/);

    assert.deepEqual(withFirst(await visibleTo(secB, nsmgrUrl), "expired"), []);
    assert.equal(await recordOf("expired-nse"), undefined);
    await victimIntact();
  });

  it("6. a token for another audience → PERMISSION_DENIED (tokens_chained)", async () => {
    const t = await generateToken(secB.identity, [id("registry")]);
    const err = await requestRefused(
      secB,
      requestOf("wrong-aud", "nsc-b"),
      tokenMetadata(t.token, t.expires),
      "a Request with a token for the registry",
    );
    assertRefused(
      err,
      [status.PERMISSION_DENIED],
      /tokens_chained.*does not contain the sub "spiffe:\/\/nsm\.test\/nsmgr"/,
    );
    // No aud at all fails the same way under mTLS.
    const none = await generateToken(secB.identity, []);
    const err2 = await requestRefused(
      secB,
      requestOf("no-aud", "nsc-b"),
      tokenMetadata(none.token, none.expires),
      "a Request with a token without aud",
    );
    assertRefused(err2, [status.PERMISSION_DENIED], /tokens_chained/);
    const mine = await visibleTo(secB, nsmgrUrl);
    assert.deepEqual([...withFirst(mine, "wrong-aud"), ...withFirst(mine, "no-aud")], []);
    await victimIntact();
  });

  it("7. registry takeover: B cannot re-register or remove A's NSE and NS, at the registry or via the nsmgr", async () => {
    const victimNse = endpoint({
      name: "victim-nse",
      networkServiceNames: ["victim-svc"],
      url: "tcp://127.0.0.1:7001",
    });
    const victimNs: NetworkService = service({ name: "victim-svc", payload: "IP" });
    await regA.registerService(victimNs, { metadata: await regMd(secA, id("registry")) });
    await regA.registerEndpoint(victimNse, { metadata: await regMd(secA, id("registry")) });
    const viaNsmgrB = registryAs(secB, nsmgrUrl);
    // The nsmgr checks ownership against its replica of the registry: let it learn A's records first.
    await eventually(async () => (await viaNsmgrB.findEndpoints({ name: "victim-nse" })).length === 1);
    await eventually(async () => (await viaNsmgrB.findServices({ name: "victim-svc" })).length === 1);

    const denied = (e: ServiceError): void =>
      assertRefused(e, [status.PERMISSION_DENIED], /registry_client_allowed.*original registrant/);
    const paths: [string, RegistryClient, string][] = [
      ["registry", registryAs(secB), id("registry")],
      ["nsmgr", viaNsmgrB, id("nsmgr")],
    ];
    for (const [where, client, peer] of paths) {
      const md = () => regMd(secB, peer);
      for (const name of ["victim-nse", "nse", "fwd"]) {
        const taken = { ...(await recordOf(name))!, url: "tcp://127.0.0.1:6666", pathIds: [] };
        denied(
          await refusal(
            md().then((m) => client.registerEndpoint(taken, { metadata: m })),
            `B's re-registration of ${name} at the ${where}`,
          ),
        );
        denied(
          await refusal(
            md().then((m) => client.unregisterEndpoint({ name }, { metadata: m })),
            `B's unregistration of ${name} at the ${where}`,
          ),
        );
      }
      denied(
        await refusal(
          md().then((m) => client.registerService({ ...victimNs, payload: "ETHERNET" }, { metadata: m })),
          `B's re-registration of victim-svc at the ${where}`,
        ),
      );
      denied(
        await refusal(
          md().then((m) => client.unregisterService("victim-svc", { metadata: m })),
          `B's unregistration of victim-svc at the ${where}`,
        ),
      );
    }

    const nse = await recordOf("victim-nse");
    assert.equal(nse?.url, "tcp://127.0.0.1:7001", "A's NSE keeps A's URL");
    assert.equal(nse?.pathIds[0], id("nsc-a"), "and A as its registrant");
    const viaNsmgr = (await registryAs(secA, nsmgrUrl).findEndpoints({ name: "victim-nse" }))[0];
    assert.equal(viaNsmgr?.url, "tcp://127.0.0.1:7001", "the nsmgr answers A's URL too");
    const ns = (await regA.findServices({ name: "victim-svc" }))[0];
    assert.equal(ns?.payload, "IP", "A's NS is unchanged");
    assert.equal(ns?.pathIds[0], id("nsc-a"));
    await registrationsIntact();
    await victimIntact();
  });

  it("8. a fake forwarder/endpoint registration through the nsmgr never attracts Requests", async () => {
    const t = await trap("attacker-fwd");
    opened.push(t);
    const viaNsmgrB = registryAs(secB, nsmgrUrl);
    const md = () => regMd(secB, id("nsmgr"));
    const fakeFwd = endpoint({
      name: "fwd",
      networkServiceNames: ["forwarder"],
      networkServiceLabels: { forwarder: { labels: { p2p: "true" } } },
      url: t.url,
    });
    assertRefused(
      await refusal(viaNsmgrB.registerEndpoint(fakeFwd, { metadata: await md() }), "B registering as fwd"),
      [status.PERMISSION_DENIED],
      /original registrant/,
    );
    assertRefused(
      await refusal(
        viaNsmgrB.registerEndpoint(endpoint({ name: "nse", networkServiceNames: [svc], url: t.url }), {
          metadata: await md(),
        }),
        "B registering as nse",
      ),
      [status.PERMISSION_DENIED],
      /original registrant/,
    );

    // A name A registers directly at the registry, claimed by B through the nsmgr at the same moment: the
    // nsmgr's replica may not know A's record yet, so its own check passes and the registry refuses. Either
    // way B's forwarder must not be recorded by localbypass (it records only what the registry accepted).
    const raceFwd = { ...fakeFwd, name: "fwd-race", url: "tcp://127.0.0.1:7002" };
    const [a, b] = await Promise.allSettled([
      regMd(secA, id("registry")).then((m) => regA.registerEndpoint(raceFwd, { metadata: m })),
      md().then((m) => viaNsmgrB.registerEndpoint({ ...raceFwd, url: t.url }, { metadata: m })),
    ]);
    if (a.status === "fulfilled") {
      assert.ok(b.status === "rejected", "B's registration of a name A holds is refused");
      assertRefused(b.reason as ServiceError, [status.PERMISSION_DENIED], /original registrant/);
    } else {
      // B reached the registry first: it owns the new name legitimately; take it away again.
      await viaNsmgrB.unregisterEndpoint({ name: "fwd-race" }, { metadata: await md() });
    }

    // Requests (new and refreshes) go to the real forwarder and endpoint; nobody dials the attacker.
    const clientC = new NsmClient({ name: "nsc-c", nsmgrUrl, security: await security("nsc-c") });
    try {
      for (let i = 0; i < 4; i++) {
        const c = await clientC.request({ service: svc });
        assert.deepEqual(
          c.path!.pathSegments.map((s) => decodeToken(s.token).sub),
          ["nsc-c", "nsmgr", "fwd", "nse"].map(id),
        );
      }
    } finally {
      await clientC.closeAll();
    }
    await victimIntact();
    assert.equal(t.hits(), 0, "nothing connected to the attacker's socket");
    await registrationsIntact();
    if (a.status === "fulfilled")
      await regA.unregisterEndpoint({ name: "fwd-race" }, { metadata: await regMd(secA, id("registry")) });
  });

  it("9. monitor snooping: B's MonitorConnections shows none of A's connections", async () => {
    // Positive control: A sees its own connection at the nsmgr; the nsmgr's identity sees it at the forwarder.
    assert.equal(withFirst(await visibleTo(secA, nsmgrUrl), connA.id).length, 1);
    const asNsmgr = await securityAs("nsmgr");
    assert.equal(withFirst(await visibleTo(asNsmgr, mesh.sock("fwd")), connA.id).length, 1);

    const ofA = (cs: Connection[]): Connection[] =>
      cs.filter((c) => c.path?.pathSegments[0]?.name === "nsc-a");
    for (const url of [nsmgrUrl, nsmgrTcp, mesh.sock("fwd"), mesh.sock("nse")])
      assert.deepEqual(ofA(await visibleTo(secB, url)), [], `B sees none of A's connections at ${url}`);
    // Naming A's connection in the selector does not help.
    const byId: MonitorScopeSelector = { pathSegments: [segment("nsc-a", connA.id)], networkServices: [] };
    assert.deepEqual(await visibleTo(secB, nsmgrUrl, byId), []);
    assert.deepEqual(
      await visibleTo(secB, nsmgrUrl, { pathSegments: [], networkServices: [svc] }).then(ofA),
      [],
    );

    // Nor do live events: B watches while A makes and closes a connection.
    const g = raw(secB, nsmgrUrl);
    const s = g.serverStream(MonitorConnectionService.monitorConnections, {
      pathSegments: [],
      networkServices: [],
    });
    const events: ConnectionEvent[] = [];
    const iter = s[Symbol.asyncIterator]();
    const first = await iter.next();
    assert.equal(first.done, false);
    const reading = (async () => {
      try {
        for (let e = await iter.next(); !e.done; e = await iter.next()) events.push(e.value);
      } catch {
        /* cancelled */
      }
    })();
    const live = await clientA.request({ service: svc, id: "nsc-a-live" });
    assert.equal(withFirst(await visibleTo(secA, nsmgrUrl), live.id).length, 1, "A sees its new connection");
    await clientA.close(live.id);
    await sleep(300);
    s.cancel();
    await reading;
    assert.deepEqual(
      events.flatMap((e) => ofA(Object.values(e.connections))),
      [],
      "B got no event of A's",
    );
  });

  it("10. a Request naming a namespace by file:///proc/1/ns/net → refused naming inodeURL", async () => {
    // The check lives in the forwarder's incoming KERNEL mechanism (kernelServer, used by the noop and the
    // kernel forwarder alike, before xconnect opens anything): the nsmgr passes mechanisms through.
    const md = async (g: GrpcClient) => secA.callMetadata(undefined, nsmgrUrl, g);
    const g = raw(secA, nsmgrUrl);
    const err = await refusal(
      g.unary(NetworkServiceService.request, requestOf("file-url", "nsc-a", "file:///proc/1/ns/net"), {
        metadata: await md(g),
        timeoutMs: 8000,
      }),
      "a Request with inodeURL file:///proc/1/ns/net",
      async (r) => g.unary(NetworkServiceService.close, r.response, { metadata: await md(g) }),
    );
    assertRefused(err, [status.INVALID_ARGUMENT, status.PERMISSION_DENIED], /inodeURL/);
    assert.deepEqual(withFirst(await visibleTo(secA, nsmgrUrl), "file-url"), []);
    await victimIntact();
  });

  it("11. a Request naming a FIFO as its namespace → refused within 2 s", async () => {
    const fifo = join(mesh.dir.path, "netns-fifo");
    execFileSync("mkfifo", [fifo]);
    const g = raw(secA, nsmgrUrl);
    const md = async () => secA.callMetadata(undefined, nsmgrUrl, g);
    const started = Date.now();
    const err = await refusal(
      g.unary(NetworkServiceService.request, requestOf("fifo-url", "nsc-a", `file://${fifo}`), {
        metadata: await md(),
        timeoutMs: 2000,
      }),
      `a Request with inodeURL file://${fifo}`,
      async (r) => g.unary(NetworkServiceService.close, r.response, { metadata: await md() }),
    );
    const took = Date.now() - started;
    assert.notEqual(err.code, status.DEADLINE_EXCEEDED, `hung until the deadline: ${err.details}`);
    assert.ok(took < 2000, `took ${took} ms`);
    assertRefused(err, [status.INVALID_ARGUMENT, status.PERMISSION_DENIED], /inodeURL/);
    await victimIntact();
  });

  it("12. 64 KiB of metadata → RESOURCE_EXHAUSTED; the servers keep serving", async () => {
    const padded = (m: Metadata): Metadata => {
      m.set("x-padding", "a".repeat(64 * 1024));
      return m;
    };
    const g = raw(secB, nsmgrUrl);
    const err = await requestRefused(
      secB,
      requestOf("fat-md", "nsc-b"),
      padded(await secB.callMetadata(undefined, nsmgrUrl, g)),
      "a Request with 64 KiB of metadata",
    );
    assertRefused(err, [status.RESOURCE_EXHAUSTED], /metadata.*limit/);
    const regErr = await refusal(
      registryAs(secB).registerEndpoint(endpoint({ name: "fat-nse", url: "tcp://127.0.0.1:9" }), {
        metadata: padded(await regMd(secB, id("registry"))),
      }),
      "a Register with 64 KiB of metadata",
    );
    assertRefused(regErr, [status.RESOURCE_EXHAUSTED], /metadata.*limit/);
    assert.deepEqual(withFirst(await visibleTo(secB, nsmgrUrl), "fat-md"), []);
    assert.equal(await recordOf("fat-nse"), undefined);
    await victimIntact();
    await registrationsIntact();
  });

  it("13. 10,000 registrations from one identity: the per-identity limit holds, others still register", async () => {
    const flooder = await security("flooder");
    const reg = registryAs(flooder);
    const md = await regMd(flooder, id("registry"));
    const total = 10_000;
    let next = 0;
    let ok = 0;
    let exhausted = 0;
    const other: string[] = [];
    let message = "";
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        try {
          await reg.registerEndpoint(
            endpoint({ name: `flood-${i}`, networkServiceNames: ["flood"], url: "tcp://127.0.0.1:9" }),
            {
              metadata: md.clone(),
              timeoutMs: 10_000,
            },
          );
          ok++;
        } catch (e) {
          const se = e as ServiceError;
          if (se.code === status.RESOURCE_EXHAUSTED) {
            exhausted++;
            message = se.details;
          } else other.push(`${codeName(se.code)}: ${se.details}`);
        }
      }
    };
    // While the flood runs, the registry answers others promptly.
    const probeTimes: number[] = [];
    let flooding = true;
    const probe = (async () => {
      while (flooding) {
        const t0 = Date.now();
        assert.ok(await recordOf("nse"));
        probeTimes.push(Date.now() - t0);
        await sleep(100);
      }
    })();
    const started = Date.now();
    await Promise.all(Array.from({ length: 50 }, worker));
    flooding = false;
    await probe;
    const took = Date.now() - started;

    assert.deepEqual(other.slice(0, 3), [], "only RESOURCE_EXHAUSTED refusals");
    assert.equal(ok, defaultMaxRegistrationsPerIdentity);
    assert.equal(exhausted, total - defaultMaxRegistrationsPerIdentity);
    assert.match(message, new RegExp(`${id("flooder")} has ${defaultMaxRegistrationsPerIdentity} live`));
    assert.match(message, /limit per identity/);
    assert.ok(
      Math.max(...probeTimes) < 2000,
      `a Find took ${Math.max(...probeTimes)} ms during the flood (${took} ms)`,
    );

    const tenant = await security("tenant");
    await registryAs(tenant).registerEndpoint(
      endpoint({ name: "tenant-nse", networkServiceNames: ["tenant-svc"], url: "tcp://127.0.0.1:7003" }),
      { metadata: await regMd(tenant, id("registry")) },
    );
    assert.equal((await recordOf("tenant-nse"))?.url, "tcp://127.0.0.1:7003");
    await registrationsIntact();
    await victimIntact();

    // Leave the mesh as it was: the replicas of the nsmgr and forwarder need not carry 1,000 records.
    let j = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (j < total) {
          const i = j++;
          if (i < total)
            await reg
              .unregisterEndpoint({ name: `flood-${i}` }, { metadata: md.clone() })
              .catch(() => undefined);
        }
      }),
    );
  });

  it("14. B's Close (or refresh) of A's connection → PERMISSION_DENIED; A's connection still refreshes", async () => {
    const stolen = (): Connection => structuredClone(connA);
    const g = raw(secB, nsmgrUrl);
    const md = async () => secB.callMetadata(undefined, nsmgrUrl, g);
    const closeErr = await refusal(
      g.unary(NetworkServiceService.close, stolen(), { metadata: await md() }),
      "B's Close of A's connection",
    );
    assertRefused(
      closeErr,
      [status.PERMISSION_DENIED],
      /belongs to spiffe:\/\/nsm\.test\/nsc-a, not to spiffe:\/\/nsm\.test\/nsc-b/,
    );
    await victimIntact();
    const refreshErr = await refusal(
      g.unary(
        NetworkServiceService.request,
        { connection: stolen(), mechanismPreferences: [kernelOffer({ inodeURL: ownInode })] },
        { metadata: await md() },
      ),
      "B's refresh of A's connection",
    );
    assertRefused(refreshErr, [status.PERMISSION_DENIED], /belongs to/);

    // Straight at the forwarder, posing as the nsmgr's hop: the chain of tokens breaks at B's.
    const atFwd = structuredClone(connA);
    atFwd.path!.index = 1;
    atFwd.id = atFwd.path!.pathSegments[1]!.id;
    const f = raw(secB, mesh.sock("fwd"));
    const fwdErr = await refusal(
      f.unary(NetworkServiceService.close, atFwd, {
        metadata: await secB.callMetadata(undefined, mesh.sock("fwd"), f),
      }),
      "B's Close of A's connection at the forwarder",
    );
    assertRefused(fwdErr, [status.PERMISSION_DENIED], /tokens_chained|belongs to|prev_token_signed/);
    assert.equal(withFirst(await visibleTo(await securityAs("nsmgr"), mesh.sock("fwd")), connA.id).length, 1);
    await victimIntact();
  });

  // Last: should it fail, the nsmgr's share of the registry's quota could be left full for later cases.
  it("13b. registrations through the nsmgr from one identity: the limit is that identity's, not the node's", async () => {
    const flooder = await security("node-flooder");
    const reg = registryAs(flooder, nsmgrUrl);
    const md = await regMd(flooder, id("nsmgr"));
    const total = defaultMaxRegistrationsPerIdentity + 200;
    const accepted: string[] = [];
    const refusals: ServiceError[] = [];
    let next = 0;
    try {
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < total) {
            const name = `node-flood-${next++}`;
            try {
              await reg.registerEndpoint(
                endpoint({ name, networkServiceNames: ["node-flood"], url: t13bUrl(name) }),
                { metadata: md.clone(), timeoutMs: 10_000 },
              );
              accepted.push(name);
            } catch (e) {
              refusals.push(e as ServiceError);
            }
          }
        }),
      );
      assert.ok(refusals.length > 0, "the flood hits a limit");
      assert.ok(accepted.length <= defaultMaxRegistrationsPerIdentity);
      for (const e of refusals.slice(0, 5))
        assertRefused(e, [status.RESOURCE_EXHAUSTED], /spiffe:\/\/nsm\.test\/node-flooder has \d+ live/);

      // Another workload of the node still registers through the same nsmgr.
      const tenant = await security("node-tenant");
      await registryAs(tenant, nsmgrUrl).registerEndpoint(
        endpoint({ name: "node-tenant-nse", networkServiceNames: ["tenant-svc"], url: t13bUrl("tenant") }),
        { metadata: await regMd(tenant, id("nsmgr")) },
      );
      assert.ok(await recordOf("node-tenant-nse"));
    } finally {
      let j = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (j < accepted.length) {
            const name = accepted[j++]!;
            await reg.unregisterEndpoint({ name }, { metadata: md.clone() }).catch(() => undefined);
          }
        }),
      );
    }
    await registrationsIntact();
    await victimIntact();
  });
});

/** A unix URL in the mesh's dir nobody serves (registrations only: nothing dials an NSE until a Request). */
function t13bUrl(name: string): string {
  return `unix://${join(mesh.dir.path, `${name}.sock`)}`;
}
