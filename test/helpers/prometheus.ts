// Test support: a private Prometheus (Debian's /usr/bin/prometheus, installed by scripts/install.sh) that scrapes
// the given targets. It listens on 127.0.0.1 on a free port, keeps its config and TSDB in a temp directory, and
// stop() kills its process group and removes that directory (also done if the test process exits, or dies of
// SIGINT/SIGTERM/SIGHUP, without calling stop()).
//
// Timing: Prometheus is ready within ~0.2 s, but the first scrape comes ~5 s after start whatever the scrape
// interval (Debian's Prometheus 2.42 hands discovered targets to the scrape manager every 5 s, not tunable in
// that version); later scrapes follow the interval. waitFor's default timeout allows for that.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { stringify } from "yaml";
import { freePorts, sleep, spawnBackend, untilReady, withPortRetry } from "./backend.js";

export const prometheusBin = "/usr/bin/prometheus";

/** One element of an instant vector (a scalar result is one sample with no labels). */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

/** One scrape target as Prometheus sees it (/api/v1/targets). */
export interface PromTarget {
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  labels: Record<string, string>;
}

export interface PrometheusOptions {
  /** `host:port` of the /metrics endpoints to scrape, e.g. "127.0.0.1:4711". */
  targets: string[];
  /** Scrape (and scrape timeout) interval; default 500 ms. */
  scrapeIntervalMs?: number;
  /** Path of the metrics endpoint on every target; default "/metrics". */
  metricsPath?: string;
  /** How long to wait for Prometheus to be ready; default 20 s. */
  timeoutMs?: number;
}

export interface Prometheus {
  /** Base URL of the HTTP API and UI, e.g. http://127.0.0.1:40123. */
  readonly url: string;
  /** Instant query at "now" (/api/v1/query); throws with Prometheus' error text when the query fails. */
  query(expr: string): Promise<PromSample[]>;
  /** Repeats `query(expr)` until `pred` holds for the result; resolves with that result. Default 15 s. */
  waitFor(expr: string, pred: (r: PromSample[]) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  /** The active scrape targets. */
  targets(): Promise<PromTarget[]>;
  /** True when there is at least one target and the last scrape of every target succeeded. */
  targetsUp(): Promise<boolean>;
  /** The last lines Prometheus logged, for failure messages. */
  logs(): string;
  /** Kills the process group and removes the temp directory. Safe to call more than once. */
  stop(): Promise<void>;
}

interface PromResponse<T> {
  status: "success" | "error";
  data?: T;
  errorType?: string;
  error?: string;
}

type QueryData =
  | { resultType: "vector"; result: Array<{ metric: Record<string, string>; value: [number, string] }> }
  | { resultType: "scalar" | "string"; result: [number, string] }
  | { resultType: "matrix"; result: unknown[] };

/** Starts Prometheus scraping `opts.targets`; resolves once its /-/ready answers 200. */
export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  if (!existsSync(prometheusBin)) {
    throw new Error(
      `${prometheusBin} not found: run scripts/install.sh (it installs Debian's prometheus package)`,
    );
  }
  const timeoutMs = opts.timeoutMs ?? 20_000;
  // A free port can be taken between our probe and Prometheus' bind (parallel runs): retry with another one.
  return withPortRetry(async () => startOnce(opts, (await freePorts(1))[0]!, timeoutMs));
}

async function startOnce(opts: PrometheusOptions, port: number, timeoutMs: number): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), "nsm-ts-prometheus-"));
  const interval = `${opts.scrapeIntervalMs ?? 500}ms`;
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    scrape_configs: [
      {
        job_name: "test",
        metrics_path: opts.metricsPath ?? "/metrics",
        static_configs: [{ targets: opts.targets }],
      },
    ],
  };
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(configFile, stringify(config));
  const url = `http://127.0.0.1:${port}`;

  const proc = spawnBackend(
    prometheusBin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    dir,
  );
  const { logs, stop } = proc;

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    let body: PromResponse<T>;
    try {
      body = JSON.parse(text) as PromResponse<T>;
    } catch {
      throw new Error(`Prometheus ${path}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    }
    if (body.status !== "success" || body.data === undefined) {
      throw new Error(
        `Prometheus ${path}: HTTP ${res.status}: ${body.errorType ?? "error"}: ${body.error ?? text}`,
      );
    }
    return body.data;
  }

  const query = async (expr: string): Promise<PromSample[]> => {
    let data: QueryData;
    try {
      data = await api<QueryData>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    } catch (e) {
      throw new Error(`query ${JSON.stringify(expr)}: ${(e as Error).message}`);
    }
    switch (data.resultType) {
      case "vector":
        return data.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
      case "scalar":
      case "string":
        return [{ metric: {}, value: Number(data.result[1]) }];
      default:
        throw new Error(
          `query ${JSON.stringify(expr)}: a ${data.resultType} result; ask for an instant vector`,
        );
    }
  };

  const targets = async (): Promise<PromTarget[]> => {
    const data = await api<{ activeTargets: PromTarget[] }>("/api/v1/targets?state=active");
    return data.activeTargets.map((t) => ({
      scrapeUrl: t.scrapeUrl,
      health: t.health,
      lastError: t.lastError,
      labels: t.labels,
    }));
  };

  const prom: Prometheus = {
    url,
    query,
    async waitFor(expr, pred, waitMs = 15_000) {
      const deadline = Date.now() + waitMs;
      let last = "no answer yet";
      for (;;) {
        try {
          const r = await query(expr);
          if (pred(r)) return r;
          last = `last result ${JSON.stringify(r)}`;
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() > deadline) {
          const ts = await targets().catch(() => []);
          throw new Error(
            `Prometheus: ${JSON.stringify(expr)} did not satisfy the predicate within ${waitMs} ms (${last}); ` +
              `targets: ${JSON.stringify(ts)}`,
          );
        }
        await sleep(200);
      }
    },
    targets,
    async targetsUp() {
      const ts = await targets();
      return ts.length > 0 && ts.every((t) => t.health === "up");
    },
    logs,
    stop,
  };

  await untilReady(proc, "prometheus", timeoutMs, () =>
    fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.ok,
      () => false,
    ),
  );
  return prom;
}
