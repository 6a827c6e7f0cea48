// `nsm demo`: the project's main job — two clouds on this machine, every component running, five paths proven
// with real traffic (src/demo/). `--keep` leaves it up; `nsm demo down` removes it (also after a crash).
import type { Command } from "commander";
import { demoDown, runDemo } from "../demo/run.js";
import { busyReason } from "../demo/state.js";
import { get, serveHello } from "../demo/web.js";
import { stopOnSignals } from "./util.js";

export function demoCommand(program: Command): void {
  const demo = program
    .command("demo")
    .description(
      "two clouds in network namespaces: every component, seven scenarios with real traffic (as root)",
    )
    .option("--keep", "leave the demo running afterwards (remove it with `nsm demo down`)")
    .action(async (o: { keep?: boolean }) => {
      if (process.getuid?.() !== 0) throw new Error("nsm demo builds network namespaces: run it as root");
      const busy = busyReason();
      if (busy) throw new Error(busy);
      const ok = await runDemo({ keep: o.keep === true, out: (l) => console.log(l) });
      process.exitCode = ok ? 0 : 1;
    });
  demo
    .command("down")
    .description("stop and remove everything a demo made (processes, namespaces, files)")
    .action(() => demoDown((l) => console.log(l)));
  demo
    .command("web-server", { hidden: true })
    .requiredOption("--listen <ip:port>")
    .requiredOption("--name <name>")
    .action(async (o: { listen: string; name: string }) => {
      const i = o.listen.lastIndexOf(":");
      // "[2001:db8::1]:80" as in URLs: the host without its brackets.
      const host = o.listen.slice(0, i).replace(/^\[(.*)\]$/, "$1");
      const server = await serveHello(host, Number(o.listen.slice(i + 1)), o.name);
      stopOnSignals(() => new Promise((r) => server.close(() => r())));
    });
  demo.command("http-get <url>", { hidden: true }).action(async (url: string) => {
    console.log((await get(url)).trim());
  });
}
