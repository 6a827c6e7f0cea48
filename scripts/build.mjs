// Transpiles src/ to dist/ with esbuild (no bundling, no type checking: `npm run lint` type-checks), so
// components run as plain JavaScript: ~50 MB less memory per process and faster start than running through
// tsx. bin/nsm.js uses dist/ only while it is newer than every source file.
// The transport-floor relays of bench:control-plane are emitted too (dist/bench/), so the floor runs from the
// same build as the components it is compared with: each is bundled with its bench/lib helpers, while its
// imports of src/ point at the dist/ modules just built (one copy of that code, shared with the components).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { build } from "esbuild";

const root = new URL("..", import.meta.url).pathname;

// The fdpass addon (native/fdpass.c): SCM_RIGHTS for descriptor passing, which Node cannot do. Compiled here
// with the system C compiler against the headers of the running Node (no node-gyp, no downloads).
const addonSrc = join(root, "native", "fdpass.c");
const addonOut = join(root, "native", "build", "fdpass.node");
if (!existsSync(addonOut) || statSync(addonOut).mtimeMs < statSync(addonSrc).mtimeMs) {
  const include = join(dirname(process.execPath), "..", "include", "node");
  if (!existsSync(join(include, "node_api.h")))
    throw new Error(`Node's C headers are not in ${include}: the fdpass addon cannot be compiled`);
  mkdirSync(dirname(addonOut), { recursive: true });
  execFileSync("cc", ["-O2", "-Wall", "-shared", "-fPIC", "-I", include, "-o", addonOut, addonSrc], {
    stdio: "inherit",
  });
  console.log("compiled native/build/fdpass.node");
}
const src = join(root, "src");
const dist = join(root, "dist");
const files = [];
const walk = (dir) => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (p.endsWith(".ts") && !p.endsWith(".test.ts") && !p.endsWith("testpki.ts")) files.push(p);
  }
};
walk(src);
rmSync(dist, { recursive: true, force: true });
const common = { format: "esm", platform: "node", target: "node20", sourcemap: true, logLevel: "warning" };
await build({ ...common, entryPoints: files, outdir: dist, outbase: src });

/** Bench children: `../../src/x.js` imports become the built `dist/x.js`, left external. */
const benchChildren = ["bench/lib/relay-child.ts", "bench/lib/h2-relay-child.ts"];
const benchOut = join(dist, "bench");
const srcToDist = {
  name: "src-to-dist",
  setup(b) {
    b.onResolve({ filter: /\/src\// }, (args) => {
      const abs = join(args.resolveDir, args.path);
      if (!abs.startsWith(src + "/")) return undefined;
      const target = join(dist, relative(src, abs));
      let rel = relative(benchOut, target);
      if (!rel.startsWith(".")) rel = "./" + rel;
      return { path: rel, external: true };
    });
  },
};
await build({
  ...common,
  entryPoints: benchChildren.map((f) => join(root, f)),
  outdir: benchOut,
  bundle: true,
  packages: "external",
  plugins: [srcToDist],
});
writeFileSync(join(dist, ".built"), new Date().toISOString() + "\n");
console.log(`built ${files.length} files and ${benchChildren.length} bench relays into dist/`);
