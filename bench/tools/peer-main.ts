/**
 * Child-process entry of the transport benchmarks: `node peer-main.js '<json>'`.
 *
 * - `{ "role": "send", ...SendOptions }` connects, prints `{"ready":true}`, waits for `go` on stdin,
 *   uploads once and prints `{"result":SendResult}`.
 * - `{ "role": "proxy", ...DelayProxyOptions }` prints `{"port":N}` and forwards until stdin closes.
 *
 * Failures are printed as `{"error":"…"}` and end the process with status 1.
 */
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { startDelayProxy, type DelayProxyOptions } from './delay-proxy.js';
import { prepareSender, type SendOptions } from './upload-send.js';

/** The JSON a peer is started with. */
export type PeerRequest = ({ readonly role: 'send' } & SendOptions) | ({ readonly role: 'proxy' } & DelayProxyOptions);

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function main(request: PeerRequest): Promise<void> {
  const stdin = createInterface({ input: process.stdin });
  if (request.role === 'proxy') {
    const proxy = await startDelayProxy(request);
    say({ port: proxy.port });
    await once(stdin, 'close');
    await proxy.close();
    return;
  }
  const sender = await prepareSender(request);
  say({ ready: true });
  const [line] = (await once(stdin, 'line')) as [string];
  if (line.trim() !== 'go') throw new Error(`expected "go" on stdin, got ${JSON.stringify(line)}`);
  try {
    const cpu = process.cpuUsage();
    const result = await sender.run();
    const used = process.cpuUsage(cpu);
    say({ result: { ...result, cpuMs: (used.user + used.system) / 1000 } });
  } finally {
    sender.close();
    stdin.close();
  }
}

main(JSON.parse(process.argv[2] ?? '{}') as PeerRequest).then(
  () => process.exit(0),
  (err: unknown) => {
    say({ error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  },
);
