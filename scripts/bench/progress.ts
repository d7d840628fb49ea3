// Progress of a bench run: a bar with the current step on a terminal, plain lines otherwise (CI
// logs, pipes), so a ten-minute run never looks stuck.
import { SingleBar } from "cli-progress";

export interface BenchProgress {
  /** A new step (one benchmark) begins. */
  step(label: string): void;
  /** What the current step is doing now. */
  note(line: string): void;
  finish(): void;
}

export function benchProgress(total: number, stream: NodeJS.WriteStream = process.stderr): BenchProgress {
  let done = 0;
  let current = "";
  if (stream.isTTY) {
    const bar = new SingleBar({ format: "bench {bar} {value}/{total} {label}", hideCursor: true, stream, clearOnComplete: false });
    bar.start(total, 0, { label: "" });
    return {
      step(label) {
        current = label;
        bar.update(done++, { label });
      },
      note(line) {
        bar.update(Math.max(0, done - 1), { label: `${current}: ${line}` });
      },
      finish() {
        bar.update(total, { label: "done" });
        bar.stop();
      },
    };
  }
  return {
    step(label) {
      stream.write(`bench: [${++done}/${total}] ${label}\n`);
    },
    note(line) {
      stream.write(`bench:   ${line}\n`);
    },
    finish() {
      stream.write("bench: done\n");
    },
  };
}
