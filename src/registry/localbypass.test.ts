// localbypass rewrites local endpoints' URLs in Find results, including pre-encoded watch events.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  NetworkServiceEndpointResponse,
  type NetworkServiceEndpointResponse as Resp,
} from "../api/registry.js";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { registryChain } from "../core/registrychain.js";
import { endpoint } from "./client.js";
import { LocalEndpoints, localBypassNSE } from "./localbypass.js";
import type { NSEServer } from "./types.js";

const publicUrl = "tcp://198.18.0.1:5001";

function chainEmitting(responses: (Resp | Uint8Array)[]) {
  const table = new LocalEndpoints();
  const tail: NSEServer = {
    name: "tail",
    register: (nse) => Promise.resolve(nse),
    find: (_q, _ctx, stream) => {
      for (const r of responses) stream.send(r);
      return Promise.resolve();
    },
  };
  return { table, chain: registryChain([localBypassNSE(table, () => publicUrl), tail]) };
}

async function urls(responses: (Resp | Uint8Array)[], register: string[]): Promise<string[]> {
  const { chain } = chainEmitting(responses);
  const ctx = CallContext.background(rootLogger);
  for (const name of register) await chain.register(endpoint({ name, url: `unix:///run/${name}.sock` }), ctx);
  const out: string[] = [];
  await chain.find({ networkServiceEndpoint: endpoint({}), watch: false }, ctx, {
    send: (r) =>
      out.push(
        (r instanceof Uint8Array ? NetworkServiceEndpointResponse.decode(r) : r).networkServiceEndpoint!.url,
      ),
  });
  return out;
}

const resp = (name: string, url: string, deleted = false): Resp => ({
  networkServiceEndpoint: endpoint({ name, url }),
  deleted,
});

describe("localbypass", () => {
  it("register stores the public URL upstream and returns the real one", async () => {
    const { chain, table } = chainEmitting([]);
    const out = await chain.register(
      endpoint({ name: "a", url: "unix:///run/a.sock" }),
      CallContext.background(rootLogger),
    );
    assert.equal(out.url, "unix:///run/a.sock");
    assert.equal(table.get("a")!.url, "unix:///run/a.sock");
  });

  it("rewrites local records to their real URL, decoded or pre-encoded", async () => {
    const bytes = NetworkServiceEndpointResponse.encode(resp("a", publicUrl)).finish();
    assert.deepEqual(await urls([resp("a", publicUrl), bytes], ["a"]), [
      "unix:///run/a.sock",
      "unix:///run/a.sock",
    ]);
  });

  it("keeps other nodes' records, drops unknown records with our URL unless deleted", async () => {
    const got = await urls(
      [resp("remote", "tcp://198.18.0.2:5001"), resp("stale", publicUrl), resp("gone", publicUrl, true)],
      [],
    );
    assert.deepEqual(got, ["tcp://198.18.0.2:5001", publicUrl]);
  });

  it("knows a registering endpoint before the registry answers (its watch event comes first)", async () => {
    const table = new LocalEndpoints();
    const seen: string[] = [];
    const tail: NSEServer = {
      name: "tail",
      // A replica below stores the record and notifies watchers before register returns.
      register: async (nse) => {
        await chain.find(
          { networkServiceEndpoint: endpoint({}), watch: false },
          CallContext.background(rootLogger),
          {
            send: (r) => seen.push((r as Resp).networkServiceEndpoint!.url),
          },
        );
        return nse;
      },
      find: (_q, _ctx, stream) => {
        stream.send(resp("a", publicUrl));
        return Promise.resolve();
      },
    };
    const chain = registryChain([localBypassNSE(table, () => publicUrl), tail]);
    await chain.register(
      endpoint({ name: "a", url: "unix:///run/a.sock" }),
      CallContext.background(rootLogger),
    );
    assert.deepEqual(seen, ["unix:///run/a.sock"]);
  });

  it("forgets a registration the registry refused", async () => {
    const table = new LocalEndpoints();
    const tail: NSEServer = { name: "tail", register: () => Promise.reject(new Error("refused")) };
    const chain = registryChain([localBypassNSE(table, () => publicUrl), tail]);
    await assert.rejects(
      chain.register(endpoint({ name: "a", url: "unix:///run/a.sock" }), CallContext.background(rootLogger)),
    );
    assert.equal(table.get("a"), undefined);
  });
});
