// What the admission webhook injects, and parsing of its upstream-named settings (cmd-admission-webhook-k8s
// internal/config: NSM_ANNOTATION, NSM_CONTAINER_IMAGES, NSM_ENVS).
import type { V1EnvVar } from "@kubernetes/client-node";

export interface InjectConfig {
  /** The pod annotation that lists the services (upstream default `networkservicemesh.io`). */
  annotation: string;
  /** Name of the injected container; also prefixes its volumes so they cannot clash with the pod's. */
  containerName: string;
  /** Our single image: its entrypoint is `nsm`, so the container runs `nsm nsc`. */
  image: string;
  /** Extra environment of the injected container (NSM_ENVS). */
  envs: V1EnvVar[];
}

/** Upstream's cmd-nsc image gives its container this name; runbooks (`kubectl logs -c cmd-nsc`) carry over. */
export const defaultContainerName = "cmd-nsc";

/** Set per pod by the webhook itself, so NSM_ENVS may not name them. */
export const perPodEnvs = ["NSM_NAME", "NSM_NETWORK_SERVICES"];

// A DNS label, as Kubernetes requires of container and volume names. Volume names are the container name
// plus at most 19 characters (`-spire-agent-socket`), and must stay within 63.
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const maxContainerName = 63 - "-spire-agent-socket".length;
// Kubernetes' rule for environment variable names.
const envName = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** NSM_ENVS: `K=V,K=V` as upstream (its values cannot hold commas either). */
export function parseEnvs(text: string | undefined): V1EnvVar[] {
  if (!text) return [];
  const envs: V1EnvVar[] = [];
  for (const kv of text.split(",").map((s) => s.trim())) {
    if (kv === "") continue;
    const i = kv.indexOf("=");
    const name = i < 0 ? kv : kv.slice(0, i);
    if (i <= 0 || !envName.test(name))
      throw new Error(`NSM_ENVS: "${kv}" is not NAME=value with a valid environment variable name`);
    if (perPodEnvs.includes(name))
      throw new Error(`NSM_ENVS: ${name} is set per pod by the webhook; remove it from NSM_ENVS`);
    envs.push({ name, value: kv.slice(i + 1) });
  }
  return envs;
}

/** NSM_CONTAINER_IMAGES: upstream takes a list of sidecars; ours is one image that runs `nsm nsc`. */
export function parseImage(text: string | undefined): string {
  const images = (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (images.length !== 1)
    throw new Error(
      `--container-images (NSM_CONTAINER_IMAGES): want exactly one image (the nsm-ts image, run as \`nsm nsc\`), got ${images.length}`,
    );
  return images[0]!;
}

export function checkContainerName(name: string): string {
  if (!dnsLabel.test(name) || name.length > maxContainerName)
    throw new Error(
      `--container-name: "${name}" must be a lower-case DNS label of at most ${maxContainerName} characters`,
    );
  return name;
}
