// Self-registration, as upstream's selfregister mode (cmd-admission-webhook-k8s internal/k8s/selfregister.go):
// a MutatingWebhookConfiguration pointing the apiserver at our Service, created (or replaced) at start and
// deleted at stop. The delete carries the resourceVersion we wrote: when a newer instance has replaced the
// configuration meanwhile (a rolling update), ours is stale and the apiserver refuses to delete theirs. Each
// instance writes its own owner annotation: an identical body would be a no-op update that keeps the old
// resourceVersion, and the old instance's delete would then succeed.
import type { AdmissionregistrationV1Api, V1MutatingWebhookConfiguration } from "@kubernetes/client-node";

export type WebhookConfigApi = Pick<
  AdmissionregistrationV1Api,
  | "createMutatingWebhookConfiguration"
  | "readMutatingWebhookConfiguration"
  | "replaceMutatingWebhookConfiguration"
  | "deleteMutatingWebhookConfiguration"
>;

export interface Registration {
  /** The configuration's name (NSM_NAME); the webhook inside is `<name>.<annotation>` as upstream. */
  name: string;
  annotation: string;
  serviceName: string;
  namespace: string;
  path: string;
  port?: number;
  /** PEM of the CA that signed the serving certificate. */
  caPem: string;
  /** Unique per process (e.g. pod name and a random id). */
  owner: string;
  /** The uid of `namespace`: the configuration's owner, so that deleting the namespace deletes it too. */
  namespaceUid?: string;
}

export const ownerAnnotation = "networkservicemesh.io/admission-webhook-owner";

/**
 * Namespaces whose pods never reach the webhook, so that the mesh itself (and the webhook's own pods) can
 * always start, even while the webhook is down (failurePolicy Fail). `spire` is SPIRE's namespace in
 * upstream's deployments-k8s.
 */
export function excludedNamespaces(own: string): string[] {
  return [...new Set(["kube-system", "spire", own])];
}

export function webhookConfiguration(r: Registration): V1MutatingWebhookConfiguration {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: {
      name: r.name,
      labels: { "app.kubernetes.io/managed-by": "nsm-admission-webhook" },
      annotations: { [ownerAnnotation]: r.owner },
      ...(r.namespaceUid
        ? {
            ownerReferences: [
              { apiVersion: "v1", kind: "Namespace", name: r.namespace, uid: r.namespaceUid },
            ],
          }
        : {}),
    },
    webhooks: [
      {
        name: `${r.name}.${r.annotation}`,
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        // As upstream: a pod asking for NSM is never created without its sidecar.
        failurePolicy: "Fail",
        matchPolicy: "Equivalent",
        reinvocationPolicy: "Never",
        timeoutSeconds: 10,
        rules: [
          {
            operations: ["CREATE"],
            apiGroups: [""],
            apiVersions: ["v1"],
            resources: ["pods"],
            scope: "Namespaced",
          },
        ],
        namespaceSelector: {
          matchExpressions: [
            {
              key: "kubernetes.io/metadata.name",
              operator: "NotIn",
              values: excludedNamespaces(r.namespace),
            },
          ],
        },
        clientConfig: {
          service: { name: r.serviceName, namespace: r.namespace, path: r.path, port: r.port ?? 443 },
          caBundle: Buffer.from(r.caPem).toString("base64"),
        },
      },
    ],
  };
}

const httpCode = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;

/** Creates the configuration, or replaces one of the same name; resolves with the resourceVersion written. */
export async function register(api: WebhookConfigApi, r: Registration): Promise<string | undefined> {
  const body = webhookConfiguration(r);
  try {
    return (await api.createMutatingWebhookConfiguration({ body })).metadata?.resourceVersion;
  } catch (err) {
    if (httpCode(err) !== 409) throw err;
  }
  const existing = await api.readMutatingWebhookConfiguration({ name: r.name });
  const replaced = await api.replaceMutatingWebhookConfiguration({
    name: r.name,
    body: { ...body, metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion } },
  });
  return replaced.metadata?.resourceVersion;
}

/**
 * Deletes the configuration if it is still the one we wrote. Resolves true when deleted, false when it was
 * gone already or replaced by another instance.
 */
export async function unregister(
  api: WebhookConfigApi,
  name: string,
  resourceVersion: string | undefined,
): Promise<boolean> {
  try {
    await api.deleteMutatingWebhookConfiguration({
      name,
      ...(resourceVersion ? { body: { preconditions: { resourceVersion } } } : {}),
    });
    return true;
  } catch (err) {
    const code = httpCode(err);
    if (code === 404 || code === 409) return false;
    throw err;
  }
}
