// `nsm admission-webhook`: injects the NSC sidecar into pods annotated `networkservicemesh.io`, as upstream's
// cmd-admission-webhook-k8s (same NSM_* settings where it has them). Serves HTTPS with certificate files,
// registers its MutatingWebhookConfiguration at start and deletes it at stop.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Command } from "commander";
import { componentLogger } from "../core/log.js";
import { checkContainerName, defaultContainerName, parseEnvs, parseImage } from "../k8s/webhook/config.js";
import { env, stopOnSignals } from "./util.js";

interface WebhookFlags {
  name: string;
  serviceName: string;
  namespace: string;
  annotation: string;
  containerImages?: string;
  containerName: string;
  envs?: string;
  listenOn: string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  kubeconfig?: string;
  register: boolean;
}

export function webhookCommand(program: Command): void {
  program
    .command("admission-webhook")
    .description(
      "Kubernetes admission webhook: adds an `nsm nsc` sidecar to pods annotated networkservicemesh.io",
    )
    .option(
      "--name <name>",
      "MutatingWebhookConfiguration name (NSM_NAME)",
      env("NSM_NAME", "admission-webhook-k8s"),
    )
    .option(
      "--service-name <name>",
      "Service the apiserver calls the webhook through (NSM_SERVICE_NAME)",
      env("NSM_SERVICE_NAME", "admission-webhook-svc"),
    )
    .option(
      "--namespace <ns>",
      "namespace of that Service; its pods are never sent to the webhook (NSM_NAMESPACE)",
      env("NSM_NAMESPACE", "default"),
    )
    .option(
      "--annotation <key>",
      "pod annotation listing the network services (NSM_ANNOTATION)",
      env("NSM_ANNOTATION", "networkservicemesh.io"),
    )
    .option(
      "--container-images <image>",
      "image of the sidecar, run as `nsm nsc` (NSM_CONTAINER_IMAGES)",
      env("NSM_CONTAINER_IMAGES"),
    )
    .option(
      "--container-name <name>",
      "name of the sidecar container (NSM_CONTAINER_NAME)",
      env("NSM_CONTAINER_NAME", defaultContainerName),
    )
    .option("--envs <k=v,...>", "extra environment of the sidecar (NSM_ENVS)", env("NSM_ENVS"))
    .option(
      "--listen-on <addr>",
      "[tcp://][host]:port to serve HTTPS on (NSM_LISTEN_ON)",
      env("NSM_LISTEN_ON", ":443"),
    )
    .option(
      "--cert-file <pem>",
      "serving certificate, re-read when it changes (NSM_CERT_FILE_PATH)",
      env("NSM_CERT_FILE_PATH"),
    )
    .option("--key-file <pem>", "its private key (NSM_KEY_FILE_PATH)", env("NSM_KEY_FILE_PATH"))
    .option(
      "--ca-file <pem>",
      "CA that signed the certificate: the registration's caBundle (NSM_CA_BUNDLE_FILE_PATH)",
      env("NSM_CA_BUNDLE_FILE_PATH"),
    )
    .option("--kubeconfig <file>", "kubeconfig; default: in-cluster, else $KUBECONFIG or ~/.kube/config")
    .option(
      "--no-register",
      "do not create the MutatingWebhookConfiguration (also when NSM_WEBHOOK_MODE=spire: upstream's mode with an " +
        "externally applied configuration)",
    )
    .action(async (o: WebhookFlags) => {
      const { certFile, keyFile, caFile } = o;
      if (!certFile || !keyFile)
        throw new Error("--cert-file and --key-file (NSM_CERT_FILE_PATH, NSM_KEY_FILE_PATH) are required");
      const inject = {
        annotation: o.annotation,
        containerName: checkContainerName(o.containerName),
        image: parseImage(o.containerImages),
        envs: parseEnvs(o.envs),
      };
      const log = componentLogger("admission-webhook", o.name);
      // Loaded here, not at the top: every `nsm` command would otherwise pay for loading the Kubernetes client.
      const { startWebhookServer, mutatePath } = await import("../k8s/webhook/server.js");
      const serve = () => startWebhookServer({ listenOn: o.listenOn, certFile, keyFile, inject, log });

      if (!o.register || env("NSM_WEBHOOK_MODE")?.toLowerCase() === "spire") {
        const server = await serve();
        log.info("not registering: the MutatingWebhookConfiguration is managed elsewhere");
        stopOnSignals(() => server.close());
        return;
      }
      if (!caFile) throw new Error("--ca-file (NSM_CA_BUNDLE_FILE_PATH) is required to register the webhook");
      const { checkSignedBy, pollFiles } = await import("../k8s/webhook/certs.js");
      const reg = await import("../k8s/webhook/register.js");
      const owner = `${hostname()} ${randomUUID()}`;
      let namespaceUid: string | undefined;
      const registration = (caPem: string, certPem = readFileSync(certFile, "utf8")) => {
        checkSignedBy(certPem, caPem, certFile, caFile);
        const { name, annotation, serviceName, namespace } = o;
        return { name, annotation, serviceName, namespace, path: mutatePath, caPem, owner, namespaceUid };
      };
      const k8s = await import("@kubernetes/client-node");
      const kc = new k8s.KubeConfig();
      try {
        if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
        else kc.loadFromDefault();
      } catch (e) {
        throw new Error(`--kubeconfig ${o.kubeconfig ?? "(default)"}: ${(e as Error).message}`);
      }
      const api = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
      // The configuration is owned by our namespace: deleting the deployment (`kubectl delete -k`) removes it
      // with the namespace even when our RBAC goes first and our own delete at stop is refused.
      try {
        const ns = await kc.makeApiClient(k8s.CoreV1Api).readNamespace({ name: o.namespace });
        namespaceUid = ns.metadata?.uid;
      } catch (err) {
        log.warn(
          { err, namespace: o.namespace },
          "cannot read our namespace: the configuration has no owner",
        );
      }
      // Checked before serving: a CA that did not sign the certificate would make every pod creation fail.
      const first = registration(readFileSync(caFile, "utf8"));

      // Serve first: once registered, the apiserver sends every pod creation here.
      const server = await serve();
      let resourceVersion = await reg.register(api, first);
      log.info({ webhookConfiguration: o.name, resourceVersion }, "MutatingWebhookConfiguration registered");

      // A rotated CA must reach the apiserver's caBundle, or it refuses the certificate the CA now signs. The
      // certificate is watched too: if it is rewritten after the CA, only then does the pair check out.
      let registering = Promise.resolve();
      const caPoller = pollFiles([caFile, certFile], 5_000, ([ca, cert]) => {
        registering = registering
          .then(async () => {
            resourceVersion = await reg.register(api, registration(ca!.toString(), cert!.toString()));
            log.info({ webhookConfiguration: o.name, resourceVersion }, "caBundle updated");
          })
          .catch((err: unknown) =>
            log.warn({ err, caFile }, "caBundle not updated; retrying at the next change"),
          );
      });

      stopOnSignals(async () => {
        caPoller.stop();
        await registering;
        // Unregister first: the apiserver stops calling us before we stop answering.
        const deleted = await reg.unregister(api, o.name, resourceVersion);
        log.info(
          { webhookConfiguration: o.name },
          deleted
            ? "MutatingWebhookConfiguration deleted"
            : "MutatingWebhookConfiguration left: gone or replaced by a newer instance",
        );
        await server.close();
      });
    });
}
