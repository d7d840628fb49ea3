// Progress of long work, one bar per step on a terminal (rows and rows/s), plain lines otherwise
// (CI logs, pipes), so output stays readable wherever it goes. Steps that run at the same time
// (the seed loads its business tables and its metrics on two connections) share one set of bars.
import { MultiBar } from "cli-progress";

export interface Progress {
  advance(n: number): void;
  finish(): void;
}

export interface Reporter {
  /** A bar (or, off a terminal, a line when it finishes) for one step of `total` rows. */
  step(label: string, total: number): Progress;
  /** Ends the bars: call once every step finished. */
  close(): void;
}

const SILENT: Progress = { advance: () => undefined, finish: () => undefined };

/** `stream` null: report nothing (tests, library use). */
export function progressReporter(stream: NodeJS.WriteStream | null = process.stderr): Reporter {
  if (!stream) return { step: () => SILENT, close: () => undefined };
  let bars: MultiBar | undefined;
  return {
    step(label, total) {
      const started = Date.now();
      let done = 0;
      const rate = () => Math.round(done / Math.max(0.001, (Date.now() - started) / 1000));
      if (stream.isTTY) {
        bars ??= new MultiBar({ format: "{label} {bar} {value}/{total} rows  {rate} rows/s", hideCursor: true, stream, clearOnComplete: false });
        const bar = bars.create(total, 0, { label: label.padEnd(26), rate: 0 });
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
    },
    close() {
      bars?.stop();
    },
  };
}
