// nbdb start: the getting-started path (npm start).
import { printStartSummary, start } from "../ops/start";
import { defineCommand } from "./command";

export default defineCommand({
  name: "start",
  description: "the getting-started path (npm start): up, seed the first time, verify, and a summary of the stack",
  stack: {},
  run: (o: { stack: string }, { log }) => start(o.stack, log),
  text: (summary, _o, print) => printStartSummary(summary, print),
  verdict: (summary) => summary.drifts.length > 0 || summary.audit.broken.length > 0,
});
