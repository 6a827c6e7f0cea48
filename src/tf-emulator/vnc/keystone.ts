// Just enough keystone v3 for the VNC clients' auth path (spec §2.4): `POST /v3/auth/tokens` with password
// credentials answers 201 and the token in `X-Subject-Token`; the API then checks `X-Auth-Token`. Tokens
// live in memory only, so a restart forgets them and clients must re-authenticate on the 401, as they
// must when real keystone tokens expire.
import { randomBytes } from "node:crypto";

export interface KeystoneCredentials {
  username: string;
  password: string;
}

export interface KeystoneAnswer {
  status: number;
  json: unknown;
  headers?: Record<string, string>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const unauthorized: KeystoneAnswer = {
  status: 401,
  json: {
    error: {
      code: 401,
      message: "The request you have made requires authentication.",
      title: "Unauthorized",
    },
  },
};

export class KeystoneEmulator {
  private readonly tokens = new Map<string, number>();

  constructor(
    private readonly creds: KeystoneCredentials,
    private readonly ttlMs = 3_600_000,
  ) {}

  /** Handles `POST /v3/auth/tokens`. */
  issue(body: unknown): KeystoneAnswer {
    const identity = isRecord(body) && isRecord(body.auth) ? body.auth.identity : undefined;
    const methods = isRecord(identity) ? identity.methods : undefined;
    const password = isRecord(identity) ? identity.password : undefined;
    const user = isRecord(password) ? password.user : undefined;
    if (!Array.isArray(methods) || !methods.includes("password") || !isRecord(user))
      return {
        status: 400,
        json: {
          error: {
            code: 400,
            message: "Expecting password credentials in auth.identity",
            title: "Bad Request",
          },
        },
      };
    if (user.name !== this.creds.username || user.password !== this.creds.password) return unauthorized;

    const token = `gAAAAA${randomBytes(48).toString("base64url")}`;
    const issued = Date.now();
    this.tokens.set(token, issued + this.ttlMs);
    const scope = isRecord(body) && isRecord(body.auth) ? body.auth.scope : undefined;
    const project = isRecord(scope) && isRecord(scope.project) ? scope.project : undefined;
    return {
      status: 201,
      headers: { "X-Subject-Token": token },
      json: {
        token: {
          methods: ["password"],
          issued_at: new Date(issued).toISOString(),
          expires_at: new Date(issued + this.ttlMs).toISOString(),
          user: {
            name: this.creds.username,
            id: "emulated-user",
            domain: { id: "default", name: "Default" },
          },
          ...(project
            ? {
                project: {
                  name: project.name,
                  id: "emulated-project",
                  domain: { id: "default", name: "Default" },
                },
              }
            : {}),
          roles: [{ id: "admin", name: "admin" }],
        },
      },
    };
  }

  valid(token: string | undefined): boolean {
    if (!token) return false;
    const expires = this.tokens.get(token);
    if (expires === undefined) return false;
    if (expires > Date.now()) return true;
    this.tokens.delete(token);
    return false;
  }

  /** Forgets every token (tests use it to force a re-authentication without a restart). */
  revokeAll(): void {
    this.tokens.clear();
  }
}
