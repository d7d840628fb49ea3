// Progress of long work, one bar per step on a terminal (rows and rows/s), plain lines otherwise
// (CI logs, pipes), so output stays readable wherever it goes.
import { SingleBar } from "cli-progress";

export interface Progress {
  advance(n: number): void;
  finish(): void;
}

const SILENT: Progress = { advance: () => undefined, finish: () => undefined };

/** `stream` null: report nothing (tests, library use). */
export function progress(label: string, total: number, stream: NodeJS.WriteStream | null = process.stderr): Progress {
  if (!stream) return SILENT;
  const started = Date.now();
  let done = 0;
  const rate = () => Math.round(done / Math.max(0.001, (Date.now() - started) / 1000));
  if (stream.isTTY) {
    const bar = new SingleBar({ format: `${label.padEnd(26)} {bar} {value}/{total} rows  {rate} rows/s`, hideCursor: true, stream, clearOnComplete: false });
    bar.start(total, 0, { rate: 0 });
    return {
      advance(n) {
        done += n;
        bar.update(done, { rate: rate() });
      },
      finish() {
        bar.update(done, { rate: rate() });
        bar.stop();
      },
    };
  }
  return {
    advance(n) {
      done += n;
    },
    finish() {
      stream.write(`${label}: ${done} rows (${rate()} rows/s)\n`);
    },
  };
}
