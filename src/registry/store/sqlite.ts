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

  loadServices(): Promise<NetworkService[]> {
    return Promise.resolve(this.stmts.allNs.all().map((r) => NetworkService.decode(r.data)));
  }

  loadEndpoints(): Promise<NetworkServiceEndpoint[]> {
    return Promise.resolve(this.stmts.allNse.all().map((r) => NetworkServiceEndpoint.decode(r.data)));
  }

  putService(ns: NetworkService): Promise<void> {
    this.stmts.putNs.run(ns.name, NetworkService.encode(ns).finish());
    return Promise.resolve();
  }

  deleteService(name: string): Promise<void> {
    this.stmts.delNs.run(name);
    return Promise.resolve();
  }

  putEndpoint(nse: NetworkServiceEndpoint): Promise<void> {
    const exp = nse.expirationTime
      ? nse.expirationTime.seconds * 1000 + Math.floor(nse.expirationTime.nanos / 1e6)
      : null;
    this.stmts.putNse.run(nse.name, NetworkServiceEndpoint.encode(nse).finish(), exp);
    return Promise.resolve();
  }

  deleteEndpoint(name: string): Promise<void> {
    this.stmts.delNse.run(name);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }
}
