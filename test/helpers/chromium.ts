// Test support: a headless Chromium (Debian's chromium package, installed by scripts/install.sh) driven by
// playwright-core, which ships no browser of its own. playwright starts the browser in its own process group and
// kills that group on browser.close() (and when the test process exits), and it talks to it over a pipe, not a
// port. Close the browser in an after()/finally; close() is safe to call more than once.
import { existsSync } from "node:fs";

import { chromium, type Browser } from "playwright-core";

/** The Debian package's launcher (a shell script that execs /usr/lib/chromium/chromium). */
export const chromiumBin = "/usr/bin/chromium";

export interface ChromiumOptions {
  /** Extra command-line switches. */
  args?: string[];
  /** How long to wait for the browser to start; default 30 s. */
  timeoutMs?: number;
}

/** Launches headless Chromium; the caller closes it with `browser.close()`. */
export async function launchChromium(opts: ChromiumOptions = {}): Promise<Browser> {
  if (!existsSync(chromiumBin)) {
    throw new Error(
      `${chromiumBin} not found: run scripts/install.sh (it installs Debian's chromium package)`,
    );
  }
  return chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    timeout: opts.timeoutMs ?? 30_000,
    // The tests run as root, where Chromium refuses to start with its sandbox. /dev/shm may be small in
    // containers: keep shared memory in /tmp. No GPU in CI.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", ...(opts.args ?? [])],
  });
}
