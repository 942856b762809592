/**
 * A real `nats-server -js` for tests: started on a free loopback port with its own store dir, and
 * restartable on the same port and store (to test outages); or a cluster of them on loopback with
 * JetStream replicated by Raft (`startNatsCluster`). Tests skip when nats-server is missing, unless
 * FEDHPC_REQUIRE names `nats`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort } from '../../common/net.js';
import { accepts, natsServerBinary } from '../../simulate/index.js';

export { natsServerBinary, startNatsCluster, type NatsCluster as TestNatsCluster, type NatsClusterNode as TestNatsNode } from '../../simulate/index.js';

/** Why NATS tests cannot run here, or undefined when they can. */
export function natsUnavailable(): string | undefined {
  return natsServerBinary() ? undefined : 'nats-server is not installed (apt-get install nats-server)';
}

export interface TestNatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); its store is kept. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store dir. */
  start(): Promise<void>;
  /** Stops it and deletes its store. */
  cleanup(): Promise<void>;
}

/** Starts `nats-server -js` on a free port with a fresh store dir; resolves once it accepts connections. */
export async function startNatsServer(): Promise<TestNatsServer> {
  const bin = natsServerBinary();
  if (!bin) throw new Error('nats-server is not installed');
  const port = await freeLoopbackPort();
  const storeDir = await mkdtemp(join(tmpdir(), 'fedhpc-nats-'));
  let child: ChildProcess | undefined;
  let output = '';
  const start = async (): Promise<void> => {
    output = '';
    const proc = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    child = proc;
    const deadline = Date.now() + 20_000;
    while (!(await accepts(port))) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port} within 20 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    start,
    async cleanup() {
      await stop();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
