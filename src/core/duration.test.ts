// Go-style durations as used by NSM_* variables (e.g. NSM_EXPIRE_PERIOD=1m).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration } from "./duration.js";

describe("parseDuration", () => {
  const good: [string, number][] = [
    ["1m", 60_000],
    ["10s", 10_000],
    ["200ms", 200],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["1h30m", 5_400_000],
    ["2h45m30s500ms", 9_930_500],
    ["1.5s", 1_500],
    ["0.5m", 30_000],
    ["1.5h", 5_400_000],
    ["500us", 0.5],
    ["500µs", 0.5],
    ["1000000ns", 1],
    ["0s", 0],
    ["30s10s", 40_000],
    ["30", 30_000],
    ["0", 0],
    ["2.5", 2_500],
    ["  1m  ", 60_000],
    ["\t15s\n", 15_000],
  ];
  for (const [text, ms] of good) {
    it(`${JSON.stringify(text)} = ${ms} ms`, () => assert.equal(parseDuration(text), ms));
  }

  it("nanoseconds are fractions of a millisecond", () => {
    assert.ok(Math.abs(parseDuration("1ns") - 1e-6) < 1e-12);
    assert.ok(Math.abs(parseDuration("1us") - 1e-3) < 1e-12);
  });

  const bad = ["", "   ", "1x", "m", "s10", "10s5", "1m 30s", "1S", "1M", "10 s", "1d", "abc", "1.2.3s"];
  for (const text of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => assert.throws(() => parseDuration(text), Error));
  }

  it("names what was parsed and quotes the text", () => {
    assert.throws(
      () => parseDuration("1x", "NSM_EXPIRE_PERIOD"),
      (err: unknown) =>
        err instanceof Error && err.message.includes("NSM_EXPIRE_PERIOD") && err.message.includes('"1x"'),
    );
  });

  it("empty input is reported as empty", () => {
    assert.throws(
      () => parseDuration(" ", "NSM_DIAL_TIMEOUT"),
      (err: unknown) =>
        err instanceof Error && err.message.includes("NSM_DIAL_TIMEOUT") && /empty/.test(err.message),
    );
  });
});
