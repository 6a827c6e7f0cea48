#!/usr/bin/env node
// Launcher: runs the transpiled CLI from dist/ when it is up to date (npm run build; npm ci does it), else
// the TypeScript sources through tsx, so a checkout being edited never runs stale code.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function newestSource(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function distIsFresh() {
  // An install without sources (the container image) has only dist/.
  if (!existsSync(join(root, "src"))) return true;
  try {
    return statSync(join(root, "dist", ".built")).mtimeMs >= newestSource(join(root, "src"));
  } catch {
    return false;
  }
}

if (process.env.NSM_FROM_SOURCE !== "1" && distIsFresh()) {
  await import("../dist/cli/main.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
