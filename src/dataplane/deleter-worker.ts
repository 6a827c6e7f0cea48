// Worker thread side of LinkDeleter: deletes links with its own rtnetlink sockets (one per namespace, entered
// with setns on this thread), so the ~20 ms the kernel holds the caller in sendmsg(2) never blocks the main
// event loop.
import { parentPort } from "node:worker_threads";
import { Dataplane } from "./index.js";

interface Job {
  id: number;
  netns: string;
  name: string;
}

const dp = new Dataplane();
/** Jobs in flight per namespace path: a handle is shared by them and closed when the last one is done. */
const users = new Map<string, number>();
let closing = false;

/** Ends the thread by letting its event loop drain (see LinkDeleter.close). */
function endIfIdle(): void {
  if (!closing || users.size > 0) return;
  dp.close();
  parentPort!.close();
}

parentPort!.on("message", (job: Job | { close: true }) => {
  if ("close" in job) {
    closing = true;
    endIfIdle();
    return;
  }
  void (async () => {
    users.set(job.netns, (users.get(job.netns) ?? 0) + 1);
    try {
      const ns = dp.netns(job.netns);
      const t0 = performance.now();
      await ns.link.delete(job.name, { missingOk: true });
      // Metrics live in the main thread's registry: the delete's time goes back with the answer.
      parentPort!.postMessage({ id: job.id, seconds: (performance.now() - t0) / 1000 });
    } catch (err) {
      parentPort!.postMessage({ id: job.id, error: (err as Error).message });
    } finally {
      const left = (users.get(job.netns) ?? 1) - 1;
      if (left > 0) users.set(job.netns, left);
      else {
        users.delete(job.netns);
        // Do not hold the namespace open: it may be on its way out.
        for (const h of dp.open) if (h.path === job.netns) h.close();
      }
      endIfIdle();
    }
  })();
});
