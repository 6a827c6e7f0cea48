// redial: a registration from a peer whose channel is in reconnect backoff replaces that channel (the next
// Request dials at once); a healthy channel is kept.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { connectivityState } from "@grpc/grpc-js";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { registryChain } from "../core/registrychain.js";
import { ClientPool } from "../networkservice/connect/pool.js";
import { endpoint } from "./client.js";
import { redialNSE } from "./redial.js";

const dir = mkdtempSync(join(tmpdir(), "nsm-redial-"));
const url = `unix://${join(dir, "nobody-listens.sock")}`;

/** Resolves when the channel to `url` has failed to connect (it is in reconnect backoff). */
function failed(pool: ClientPool): Promise<void> {
  const ch = pool.get(url).raw.getChannel();
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 5000;
    const check = (): void => {
      const s = ch.getConnectivityState(true);
      if (s === connectivityState.TRANSIENT_FAILURE) return resolve();
      if (Date.now() > deadline) return reject(new Error(`channel state ${connectivityState[s]}`));
      ch.watchConnectivityState(s, deadline, check);
    };
    check();
  });
}

describe("redial", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("replaces a channel in reconnect backoff when its peer registers", async () => {
    const pool = new ClientPool();
    try {
      await failed(pool);
      const stale = pool.get(url);
      const chain = registryChain([redialNSE(pool)]);
      await chain.register(endpoint({ name: "fwd-1", url }), CallContext.background(rootLogger));
      assert.notEqual(pool.get(url), stale, "a fresh channel");
    } finally {
      pool.close();
    }
  });

  it("keeps a channel that is not failing", async () => {
    const pool = new ClientPool();
    try {
      const idle = pool.get(url);
      const chain = registryChain([redialNSE(pool)]);
      await chain.register(endpoint({ name: "fwd-1", url }), CallContext.background(rootLogger));
      assert.equal(pool.get(url), idle);
    } finally {
      pool.close();
    }
  });
});
