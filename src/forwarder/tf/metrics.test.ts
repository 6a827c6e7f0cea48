// TF API metrics: each exchange of the agent and VNC clients with a server timed by method, resource (never a
// uuid or name) and status class; a server that does not answer counts as "none".
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import { metricValue } from "../../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../../observability/metrics/registry.js";
import { AgentClient } from "./agent.js";
import { resourceOf } from "./metrics.js";
import { VncClient } from "./vnc.js";

const uuid = "0b3a7c1e-8a53-4c1e-9f3e-2d5b6a7c8d9e";

describe("TF resource label", () => {
  it("is the path's first segment, never what follows", () => {
    assert.equal(resourceOf(`/virtual-network/${uuid}`), "virtual-network");
    assert.equal(resourceOf("/virtual-networks?detail=true&obj_uuids=x"), "virtual-networks");
    assert.equal(resourceOf("/vm-cfg/nsm__abc"), "vm-cfg");
    assert.equal(resourceOf("/"), "/");
  });
});

describe("TF API metrics", () => {
  let server: Server;
  let url = "";

  before(async () => {
    // Answers like the two APIs would: a VN by uuid, fqname-to-id, and the agent's 404 for a VM not ready.
    server = createServer((req, res) => {
      const path = req.url ?? "/";
      if (path === `/virtual-network/${uuid}`)
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ "virtual-network": { uuid, fq_name: ["d", "p", "vn"] } }));
      else if (path === "/fqname-to-id")
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ uuid }));
      else res.writeHead(404).end("not found");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  afterEach(disableMetrics);

  it("times VNC exchanges by method, resource and status class", async () => {
    await enableMetrics();
    const vnc = new VncClient({ url });
    try {
      await vnc.readByFqName("virtual-network", ["d", "p", "vn"]);
      assert.equal(await vnc.tryRead("virtual-machine", uuid), undefined);
    } finally {
      vnc.close();
    }
    const h = "nsm_tf_vnc_request_duration_seconds_count";
    assert.equal(await metricValue(h, { method: "POST", resource: "fqname-to-id", status: "2xx" }), 1);
    assert.equal(await metricValue(h, { method: "GET", resource: "virtual-network", status: "2xx" }), 1);
    assert.equal(await metricValue(h, { method: "GET", resource: "virtual-machine", status: "4xx" }), 1);
  });

  it("times agent exchanges, and one that got no answer as status none", async () => {
    await enableMetrics();
    const agent = new AgentClient({ url });
    try {
      assert.equal(await agent.getVm(uuid), undefined);
    } finally {
      agent.close();
    }
    const down = new AgentClient({ url: "http://127.0.0.1:1" });
    await assert.rejects(down.getVmCfg("nsm__x"));
    down.close();
    const h = "nsm_tf_agent_request_duration_seconds_count";
    assert.equal(await metricValue(h, { method: "GET", resource: "vm", status: "4xx" }), 1);
    assert.equal(await metricValue(h, { method: "GET", resource: "vm-cfg", status: "none" }), 1);
  });
});
