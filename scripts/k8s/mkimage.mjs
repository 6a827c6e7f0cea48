#!/usr/bin/env node
// Writes a one-layer image in `docker save` format from a directory, with no container engine and no
// registry: containerd imports it (`ctr -n k8s.io images import`), so do `docker load` and `podman load`.
// The layer is reproducible: entries sorted, owned by root, mtimes zeroed (GNU tar does the archiving).
// usage: mkimage.mjs OUT.tar NAME:TAG ROOTFS [--entrypoint JSON] [--cmd JSON] [--env K=V]... [--user U]
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [out, ref, rootfs, ...rest] = process.argv.slice(2);
if (!out || !ref || !rootfs || !ref.includes(":")) {
  console.error("usage: mkimage.mjs OUT.tar NAME:TAG ROOTFS [--entrypoint JSON] [--cmd JSON] [--env K=V]...");
  process.exit(2);
}
const config = { Env: [], WorkingDir: "/" };
for (let i = 0; i < rest.length; i += 2) {
  const [flag, value] = [rest[i], rest[i + 1]];
  if (value === undefined) throw new Error(`${flag} needs a value`);
  if (flag === "--entrypoint") config.Entrypoint = JSON.parse(value);
  else if (flag === "--cmd") config.Cmd = JSON.parse(value);
  else if (flag === "--env") config.Env.push(value);
  else if (flag === "--user") config.User = value;
  else if (flag === "--workdir") config.WorkingDir = value;
  else throw new Error(`unknown flag ${flag}`);
}
if (config.Env.length === 0)
  config.Env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

const work = mkdtempSync(join(tmpdir(), "mkimage-"));
try {
  const layerTmp = join(work, "layer.tar");
  execFileSync("tar", [
    "--create",
    "--file",
    layerTmp,
    "--directory",
    rootfs,
    "--sort=name",
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "--mtime=@0",
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    ".",
  ]);
  const layer = readFileSync(layerTmp);
  const diffId = createHash("sha256").update(layer).digest("hex");
  const imageConfig = {
    architecture: "amd64",
    os: "linux",
    created: "1970-01-01T00:00:00Z",
    config,
    rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
    history: [{ created: "1970-01-01T00:00:00Z", created_by: "scripts/k8s/mkimage.mjs" }],
  };
  const configBytes = Buffer.from(JSON.stringify(imageConfig));
  const configName = `${createHash("sha256").update(configBytes).digest("hex")}.json`;
  const image = join(work, "image");
  mkdirSync(join(image, diffId), { recursive: true });
  renameSync(layerTmp, join(image, diffId, "layer.tar"));
  writeFileSync(join(image, configName), configBytes);
  writeFileSync(
    join(image, "manifest.json"),
    JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: [`${diffId}/layer.tar`] }]),
  );
  const [name, tag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
  writeFileSync(join(image, "repositories"), JSON.stringify({ [name]: { [tag]: diffId } }));
  execFileSync("tar", [
    "--create",
    "--file",
    out,
    "--directory",
    image,
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--mtime=@0",
    ".",
  ]);
  console.log(`${out}: ${ref} sha256:${diffId} (${(layer.length / 1e6).toFixed(1)} MB layer)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
