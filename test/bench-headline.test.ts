// bench/README.md's headline table is what bench/results/*.json say: a run that writes new results without
// regenerating the table (npm run bench:headline), or a table edited by hand, fails here.
import { it } from "node:test";
import assert from "node:assert/strict";
import { readmeIsCurrent } from "../bench/headline.js";

it("bench/README.md's headline table matches bench/results/*.json", () => {
  assert.ok(readmeIsCurrent(), "run npm run bench:headline and commit bench/README.md");
});
