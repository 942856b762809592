/**
 * Starting the transport benchmarks' child processes (`peer-main.js`) and timing them: senders are
 * started and connected first, then told to go at once, so a figure covers only the transfer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NODE_HEAP_OPTIONS } from '../../common/gc-tuning.js';
import { withMallocTuning } from '../../common/malloc.js';
import type { PeerRequest } from './peer-main.js';
import type { SendOptions, SendResult } from './upload-send.js';

const PEER_MAIN = fileURLToPath(new URL('./peer-main.js', import.meta.url));

/** One line a peer printed. */
interface PeerMessage {
  readonly ready?: boolean;
  readonly port?: number;
  readonly result?: SendResult;
  readonly error?: string;
}

/** A running child process speaking JSON lines. */
export interface Peer {
  /** The next message, or a rejection if the child fails, exits or stays silent for `timeoutMs`. */
  next(what: string, timeoutMs: number): Promise<PeerMessage>;
  send(line: string): void;
  stop(): void;
}

/** Starts `peer-main.js` with `request`; its stderr goes to ours. */
export function spawnPeer(request: PeerRequest): Peer {
  // Sites run with the allocator settings and Node options `bin/fedhpc` gives every fedhpc process.
  const env = withMallocTuning(process.env);
  const child: ChildProcess = spawn(process.execPath, [...NODE_HEAP_OPTIONS, PEER_MAIN, JSON.stringify(request)], { stdio: ['pipe', 'pipe', 'inherit'], env });
  const queue: PeerMessage[] = [];
  let waiter: ((m: PeerMessage) => void) | undefined;
  const deliver = (m: PeerMessage): void => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(m);
    } else queue.push(m);
  };
  createInterface({ input: child.stdout! }).on('line', (line) => deliver(JSON.parse(line) as PeerMessage));
  // 'close', not 'exit': only then has every line the child printed been read.
  child.on('close', (code, signal) => deliver({ error: `peer exited (${code ?? signal}) before answering` }));
  return {
    next(what, timeoutMs) {
      const m = queue.shift();
      const answer =
        m !== undefined
          ? Promise.resolve(m)
          : new Promise<PeerMessage>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
              waiter = (msg) => {
                clearTimeout(timer);
                resolve(msg);
              };
            });
      return answer.then((msg) => {
        if (msg.error !== undefined) throw new Error(`${what}: ${msg.error}`);
        return msg;
      });
    },
    send(line) {
      child.stdin!.write(`${line}\n`);
    },
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}

/** A delay proxy in its own process (so its event loop competes with neither end), optionally of limited bandwidth each way. */
export async function startProxyPeer(targetPort: number, oneWayDelayMs: number, bytesPerS?: number): Promise<{ port: number; stop(): void }> {
  const peer = spawnPeer({ role: 'proxy', target: { host: '127.0.0.1', port: targetPort }, oneWayDelayMs, ...(bytesPerS ? { bytesPerS } : {}) });
  try {
    const { port } = await peer.next('delay proxy', 30_000);
    if (port === undefined) throw new Error('delay proxy did not report its port');
    return { port, stop: () => peer.stop() };
  } catch (err) {
    peer.stop();
    throw err;
  }
}

/** Total throughput of uploads that ran at once. */
export interface UploadFigures {
  readonly bytes: number;
  readonly seconds: number;
  /** Megabytes (10^6 bytes) per second, all senders together. */
  readonly mbPerS: number;
  /** CPU seconds per GB (10^9 bytes) the senders used, and the receiving (this) process used. */
  readonly senderCpuSPerGB: number;
  readonly receiverCpuSPerGB: number;
}

/** Runs one sender process per entry of `senders`, all starting together; resolves with the total. */
export async function runUploads(senders: readonly SendOptions[]): Promise<UploadFigures> {
  const peers = senders.map((s) => spawnPeer({ role: 'send', ...s }));
  try {
    await Promise.all(peers.map((p, i) => p.next(`sender ${i} connecting`, 60_000)));
    // The receivers run in this process: its CPU time during the transfer is theirs (and the peers' bookkeeping).
    const cpu = process.cpuUsage();
    for (const p of peers) p.send('go');
    const results = await Promise.all(
      peers.map(async (p, i) => {
        const { result } = await p.next(`sender ${i} uploading`, senders[i]!.deadlineMs + 10_000);
        if (!result) throw new Error(`sender ${i} sent no result`);
        return result;
      }),
    );
    const used = process.cpuUsage(cpu);
    const bytes = results.reduce((sum, r) => sum + r.bytes, 0);
    const seconds = (Math.max(...results.map((r) => r.endMs)) - Math.min(...results.map((r) => r.startMs))) / 1000;
    const perGB = (cpuMs: number): number => cpuMs / 1000 / (bytes / 1e9);
    return {
      bytes,
      seconds,
      mbPerS: bytes / 1e6 / seconds,
      senderCpuSPerGB: perGB(results.reduce((sum, r) => sum + r.cpuMs, 0)),
      receiverCpuSPerGB: perGB((used.user + used.system) / 1000),
    };
  } finally {
    for (const p of peers) p.stop();
  }
}

/** `CPU s/GB: senders 1.23, receiver 0.98` — the cost per byte, which load elsewhere barely changes. */
export function cpuLine(f: UploadFigures): string {
  return `CPU s/GB: senders ${f.senderCpuSPerGB.toFixed(2)}, receiver ${f.receiverCpuSPerGB.toFixed(2)}`;
}
