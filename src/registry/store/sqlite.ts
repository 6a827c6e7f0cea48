// Durable registry store on better-sqlite3. Records are stored as their protobuf encoding, keyed by name, so
// the schema never lags the protos. WAL + synchronous=NORMAL survives a process kill -9 (not power loss,
// which NSEs recover from anyway by refreshing their registration within a minute).
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";
import type { RegistryStore } from "./store.js";

export class SqliteStore implements RegistryStore {
  readonly kind = "sqlite";
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS ns  (name TEXT PRIMARY KEY, data BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS nse (name TEXT PRIMARY KEY, data BLOB NOT NULL, expires_ms INTEGER);
    `);
    this.stmts = {
      allNs: this.db.prepare<[], { data: Buffer }>("SELECT data FROM ns"),
      allNse: this.db.prepare<[], { data: Buffer }>("SELECT data FROM nse"),
      putNs: this.db.prepare(
        "INSERT INTO ns (name, data) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data",
      ),
      delNs: this.db.prepare("DELETE FROM ns WHERE name = ?"),
      putNse: this.db.prepare(
        "INSERT INTO nse (name, data, expires_ms) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data, expires_ms = excluded.expires_ms",
      ),
      delNse: this.db.prepare("DELETE FROM nse WHERE name = ?"),
    };
  }

  /**
   * Writes of one event-loop turn, committed together: one transaction for many registrations (with WAL and
   * synchronous=NORMAL a commit does not fsync; checkpoints do).
   */
  private pending: { run: () => void; resolve: () => void; reject: (e: unknown) => void }[] = [];

  private write(run: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush());
      this.pending.push({ run, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) w.run();
      })();
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    for (const w of batch) w.resolve();
  }

  loadServices(): Promise<NetworkService[]> {
    return Promise.resolve(this.stmts.allNs.all().map((r) => NetworkService.decode(r.data)));
  }

  loadEndpoints(): Promise<NetworkServiceEndpoint[]> {
    return Promise.resolve(this.stmts.allNse.all().map((r) => NetworkServiceEndpoint.decode(r.data)));
  }

  putService(ns: NetworkService): Promise<void> {
    const data = NetworkService.encode(ns).finish();
    return this.write(() => this.stmts.putNs.run(ns.name, data));
  }

  deleteService(name: string): Promise<void> {
    return this.write(() => this.stmts.delNs.run(name));
  }

  putEndpoint(nse: NetworkServiceEndpoint): Promise<void> {
    const exp = nse.expirationTime
      ? nse.expirationTime.seconds * 1000 + Math.floor(nse.expirationTime.nanos / 1e6)
      : null;
    const data = NetworkServiceEndpoint.encode(nse).finish();
    return this.write(() => this.stmts.putNse.run(nse.name, data, exp));
  }

  deleteEndpoint(name: string): Promise<void> {
    return this.write(() => this.stmts.delNse.run(name));
  }

  close(): Promise<void> {
    if (this.pending.length > 0) this.flush();
    this.db.close();
    return Promise.resolve();
  }
}
