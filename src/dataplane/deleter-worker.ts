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

parentPort!.on("message", (job: Job) => {
  void (async () => {
    try {
      const ns = dp.netns(job.netns);
      try {
        await ns.link.delete(job.name, { missingOk: true });
      } finally {
        ns.close();
      }
      parentPort!.postMessage({ id: job.id });
    } catch (err) {
      parentPort!.postMessage({ id: job.id, error: (err as Error).message });
    }
  })();
});
