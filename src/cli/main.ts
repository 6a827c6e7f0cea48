// `nsm`: one CLI for every component.
import { Command, CommanderError } from "commander";
import { isServiceError } from "../core/errors.js";
import { componentCommands } from "./components.js";
import { dashboardCommand } from "./dashboard.js";
import { demoCommand } from "./demo.js";
import { registryCommand } from "./registry.js";
import { tfCommands } from "./tf.js";
import { webhookCommand } from "./webhook.js";

const program = new Command()
  .name("nsm")
  .description("Network Service Mesh in TypeScript")
  .showHelpAfterError()
  .exitOverride();

registryCommand(program);
componentCommands(program);
tfCommands(program);
demoCommand(program);
dashboardCommand(program);
webhookCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  const message = isServiceError(err)
    ? `${err.details} (gRPC code ${err.code})`
    : err instanceof Error
      ? err.message
      : String(err);
  console.error(`nsm: ${message}`);
  process.exit(1);
}
