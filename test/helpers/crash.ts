/**
 * A coordinator process armed with a kill point (`FEDHPC_CRASH_AT`, coordinator/crash-points.ts):
 * the built CLI started with that variable in its environment.
 */
import { spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, type Proc, type TestFederation } from './federation.js';

/** Starts `fed`'s coordinator as a process that SIGKILLs itself on reaching `point`. */
export async function startArmedCoordinator(fed: TestFederation, point: string, name = 'coordinator-armed'): Promise<Proc> {
  const log = join(fed.dir, `${name}.log`);
  const fh = await open(log, 'a');
  const child = spawn(process.execPath, [CLI, 'coordinator', '--config', fed.files.coordinatorConfig], {
    stdio: ['ignore', fh.fd, fh.fd],
    env: { ...process.env, FEDHPC_CRASH_AT: point },
  });
  const exited = new Promise<number | string>((res) =>
    child.once('exit', (code, sig) => {
      void fh.close().catch(() => undefined);
      res(code ?? sig ?? -1);
    }),
  );
  return {
    child,
    log,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    logText: () => readFile(log, 'utf8'),
  };
}
