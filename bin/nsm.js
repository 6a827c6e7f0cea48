#!/usr/bin/env node
// Thin launcher: runs the TypeScript CLI through tsx so that `nsm` works straight from a checkout.
import { register } from "tsx/esm/api";
register();
await import("../src/cli/main.ts");
