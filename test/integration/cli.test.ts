// `nsm registry ns|nse …` as a user runs them (`nsm demo` has its own e2e test).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { runNsm, startComponent, type Component } from "../helpers/proc.js";

const crd = new URL("../fixtures/crd/services.yaml", import.meta.url).pathname;
let reg: Component;
let url: string;

describe("nsm CLI", () => {
  before(async () => {
    reg = await startComponent(
      ["registry", "--store", "memory", "--listen-on", "tcp://127.0.0.1:0"],
      "registry serving",
    );
    url = reg.urls[0]!;
  });
  after(async () => {
    await reg?.stop();
  });

  it("ns apply -f reads upstream CRD YAML; get prints it back with upstream field names", async () => {
    const applied = await runNsm(["registry", "ns", "apply", "-f", crd, "--registry-url", url]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /networkservice\/firewall-chain applied/);
    assert.match(applied.stdout, /networkserviceendpoint\/nse-cli registered/);

    const got = await runNsm(["registry", "ns", "get", "firewall-chain", "--registry-url", url]);
    assert.equal(got.code, 0, got.stderr);
    const doc = parse(got.stdout) as {
      kind: string;
      metadata: { name: string };
      spec: Record<string, unknown>;
    };
    assert.equal(doc.kind, "NetworkService");
    assert.equal(doc.metadata.name, "firewall-chain");
    const matches = doc.spec.matches as {
      source_selector: Record<string, string>;
      routes: { destination_selector: Record<string, string> }[];
      fallthrough: boolean;
    }[];
    assert.deepEqual(matches[0]!.source_selector, { app: "firewall" });
    assert.equal(matches[0]!.fallthrough, true);
    assert.deepEqual(matches[1]!.routes[0]!.destination_selector, { nodeName: "{{.nodeName}}" });
  });

  it("ns list and nse list print tables and structured output", async () => {
    const ns = await runNsm(["registry", "ns", "list", "--registry-url", url]);
    assert.match(ns.stdout, /^NAME\s+PAYLOAD\s+MATCHES\nfirewall-chain\s+ETHERNET\s+2$/m);
    const nse = await runNsm(["registry", "nse", "list", "--registry-url", url]);
    assert.match(nse.stdout, /nse-cli\s+firewall-chain\s+tcp:\/\/198\.18\.7\.1:5001\s+\d+s/);
    const y = await runNsm([
      "registry",
      "nse",
      "list",
      "-o",
      "yaml",
      "--service",
      "firewall-chain",
      "--registry-url",
      url,
    ]);
    const docs = parseAllDocuments(y.stdout).map(
      (d) => d.toJS() as { spec: { network_service_names: string[] } },
    );
    assert.deepEqual(docs[0]!.spec.network_service_names, ["firewall-chain"]);
  });

  it("ns delete removes; get of a missing service fails with a clear message", async () => {
    const del = await runNsm(["registry", "ns", "delete", "firewall-chain", "--registry-url", url]);
    assert.equal(del.code, 0, del.stderr);
    const got = await runNsm(["registry", "ns", "get", "firewall-chain", "--registry-url", url]);
    assert.equal(got.code, 1);
    assert.match(got.stderr, /network service "firewall-chain" not found/);
  });

  it("apply of a document with a bad field reports the field", async () => {
    const d = mkdtempSync(join(tmpdir(), "nsm-cli-"));
    try {
      const f = join(d, "bad.yaml");
      writeFileSync(f, "kind: NetworkService\nmetadata: {name: bad}\nspec: {payload: MPLS}\n");
      const r = await runNsm(["registry", "ns", "apply", "-f", f, "--registry-url", url]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /network_service\.payload/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
