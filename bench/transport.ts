// bench:transport — what descriptor passing costs the unix-socket transport. Since issue 13 every unix link
// runs grpc-js over an FdSocket (native/fdpass.c: recvmsg/sendmsg with SCM_RIGHTS) instead of Node's own
// net.Socket, so that descriptors can travel as upstream's grpcfd sends them. Baseline, same run, same
// process, rounds interleaved: grpc-js serving and dialling the unix socket itself (no descriptors possible).
//
// For plaintext and mTLS (a test CA's SVIDs, as the components use), with NetworkService.Request-sized
// messages and a token-sized metadata entry:
//   p50 latency, 1 in flight; calls/s, 10 in flight; and on the FdSocket transport the same with one
//   descriptor (a network namespace) passed with every call and received by the handler.
// Printed: each figure's median over the rounds, and fdsocket ÷ baseline (latency: >1 is slower; calls/s:
// <1 is slower). Failed calls are counted (bench/lib/report.ts). Usage: npm run bench:transport [-- --quick]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { NetworkServiceService, type NetworkServiceRequest } from "../src/api/networkservice.js";
import type { Connection } from "../src/api/connection.js";
import { createSecurity, type Security } from "../src/components/security.js";
import { GrpcClient } from "../src/core/client.js";
import { closeFd, openToSend } from "../src/core/fdpass/files.js";
import { defaultChannelOptions, defaultServerOptions, NsmServer } from "../src/core/grpc.js";
import { unaryHandler } from "../src/core/handlers.js";
import { rootLogger } from "../src/core/log.js";
import { emptyConnection } from "../src/networkservice/updatepath/updatepath.js";
import { TrustDomainCa } from "../src/security/ca.js";
import { checkErrors, fmt, printTable, writeResults, type RoundResult } from "./lib/report.js";

const quick = process.argv.includes("--quick");
const rounds = quick ? 3 : 7;
const latencyCalls = quick ? 300 : 1000;
const throughputCalls = quick ? 1000 : 4000;
const log = rootLogger.child({ bench: "transport" });
log.level = "warn";

// A Request as a hop sends one: a path of four segments with ~1.3 KB tokens, a kernel mechanism, labels.
const token = "x".repeat(1250);
const request: NetworkServiceRequest = {
  connection: {
    ...emptyConnection(),
    id: "bench-0",
    networkService: "icmp-responder",
    labels: { app: "bench", nodeName: "node-1" },
    path: {
      index: 1,
      pathSegments: ["nsc", "nsmgr", "forwarder", "nse"].map((n) => ({
        name: n,
        id: `${n}-00000000-0000-0000-0000-000000000000`,
        token,
        expires: { seconds: 2_000_000_000, nanos: 0 },
        metrics: {},
      })),
    },
  },
  mechanismPreferences: [],
};

type Call = (withFd: boolean) => Promise<void>;

interface Variant {
  name: "baseline" | "fdsocket";
  call: Call;
  close(): Promise<void>;
}

function service(): grpc.UntypedServiceImplementation {
  return {
    request: unaryHandler(log, "Request", async (req: NetworkServiceRequest, ctx) => {
      const want = req.connection!.labels["fd"];
      if (want && ctx.fds) closeFd(await ctx.fds.recvFd(want, AbortSignal.timeout(5000)));
      return req.connection!;
    }),
    close: unaryHandler(log, "Close", (_c: Connection) => Promise.resolve({})),
  };
}

const md = (): grpc.Metadata => {
  const m = new grpc.Metadata();
  m.set("authorization", token);
  return m;
};

async function baseline(dir: string, sec: Security | undefined): Promise<Variant> {
  const server = new grpc.Server(defaultServerOptions);
  server.addService(NetworkServiceService, service());
  const path = join(dir, "baseline.sock");
  await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `unix://${path}`,
      sec?.serverCredentials() ?? grpc.ServerCredentials.createInsecure(),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );
  const client = new grpc.Client(
    `unix://${path}`,
    sec?.channelCredentials() ?? grpc.credentials.createInsecure(),
    {
      ...defaultChannelOptions,
      ...(sec?.channelOptions() ?? {}),
    },
  );
  const def = NetworkServiceService.request;
  const call: Call = () =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        md(),
        { deadline: Date.now() + 10_000 },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  return {
    name: "baseline",
    call,
    close: async () => {
      client.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    },
  };
}

async function fdsocket(dir: string, sec: Security | undefined): Promise<Variant> {
  const server = new NsmServer(
    [{ name: "networkservice.NetworkService", definition: NetworkServiceService, implementation: service() }],
    sec?.serverCredentials(),
  );
  const url = await server.listen(`unix://${join(dir, "fdsocket.sock")}`);
  const client = new GrpcClient(url, sec?.channelOptions() ?? {}, sec?.channelCredentials(url));
  const withFd: NetworkServiceRequest = { ...request, connection: { ...request.connection!, labels: {} } };
  const call: Call = async (fd) => {
    if (!fd) {
      await client.unary(NetworkServiceService.request, request, { metadata: md() });
      return;
    }
    const f = openToSend("/proc/self/ns/net");
    client.fds!.sendFd(f.fd);
    closeFd(f.fd);
    withFd.connection!.labels = { fd: f.inodeUrl };
    await client.unary(NetworkServiceService.request, withFd, { metadata: md() });
  };
  return {
    name: "fdsocket",
    call,
    close: async () => {
      client.close();
      await server.stop(0);
    },
  };
}

async function closedLoop(
  call: Call,
  withFd: boolean,
  total: number,
  inFlight: number,
): Promise<RoundResult> {
  const latenciesMs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++;
      const t = performance.now();
      try {
        await call(withFd);
        latenciesMs.push(performance.now() - t);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { latenciesMs, wallMs: performance.now() - start, errors, ...(firstError ? { firstError } : {}) };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

interface Figures {
  p50c1: number[];
  rateC10: number[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "nsm-bench-transport-"));
  const results: Record<string, number> = {};
  const rows: string[][] = [];
  try {
    const ca = await TrustDomainCa.create("bench.transport");
    for (const mode of ["plaintext", "mTLS"] as const) {
      const sec =
        mode === "mTLS"
          ? createSecurity({
              name: "bench",
              files: await ca.writeFiles(dir, "bench", "spiffe://bench.transport/bench"),
            })
          : undefined;
      const variants = [await baseline(dir, sec), await fdsocket(dir, sec)];
      const cases: { v: Variant; fd: boolean; label: string }[] = [
        { v: variants[0]!, fd: false, label: "baseline (grpc-js net.Socket)" },
        { v: variants[1]!, fd: false, label: "fdsocket" },
        { v: variants[1]!, fd: true, label: "fdsocket + 1 descriptor per call" },
      ];
      const figs = cases.map((): Figures => ({ p50c1: [], rateC10: [] }));
      for (const c of cases) await closedLoop(c.v.call, c.fd, 200, 10); // warm up every path
      for (let r = 0; r < rounds; r++) {
        for (const [i, c] of cases.entries()) {
          const lat = await closedLoop(c.v.call, c.fd, latencyCalls, 1);
          checkErrors(`${mode} ${c.label} c=1`, lat, latencyCalls);
          figs[i]!.p50c1.push(median(lat.latenciesMs));
          const thr = await closedLoop(c.v.call, c.fd, throughputCalls, 10);
          checkErrors(`${mode} ${c.label} c=10`, thr, throughputCalls);
          figs[i]!.rateC10.push((thr.latenciesMs.length / thr.wallMs) * 1000);
        }
      }
      const base = { p50: median(figs[0]!.p50c1), rate: median(figs[0]!.rateC10) };
      for (const [i, c] of cases.entries()) {
        const p50 = median(figs[i]!.p50c1);
        const rate = median(figs[i]!.rateC10);
        const key = `${mode.toLowerCase()}_${["baseline", "fdsocket", "fdsocket_fd"][i]}`;
        results[`${key}_p50_ms_c1`] = p50;
        results[`${key}_calls_per_s_c10`] = rate;
        if (i > 0) {
          results[`${key}_over_baseline_p50_c1`] = p50 / base.p50;
          results[`${key}_over_baseline_rate_c10`] = rate / base.rate;
        }
        rows.push([
          `${mode}: ${c.label}`,
          fmt(p50 * 1000),
          i === 0 ? "1" : fmt(p50 / base.p50),
          fmt(rate),
          i === 0 ? "1" : fmt(rate / base.rate),
        ]);
      }
      for (const v of variants) await v.close();
      sec?.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(
    `unix-socket transport, median of ${rounds} interleaved rounds (${latencyCalls} calls at 1 in flight, ${throughputCalls} at 10)`,
    ["transport", "p50 µs c=1", "÷ baseline", "calls/s c=10", "÷ baseline"],
    rows,
  );
  writeResults(new URL("./results/transport.json", import.meta.url).pathname, results, quick);
  process.exit(0);
}

void main();
