/**
 * `npm run bench -- wan [--json] [--mib 1024] [--unpatched-mib 32] [--reps 2]`: the `transport`
 * upload through a TCP proxy in its own process that delays every block 15 ms each way (30 ms of
 * round trip, as between two European centres; this machine has no netem), against raw mTLS
 * through the same kind of proxy. Alternating reps, best of each kept.
 *
 * Also uploads `--unpatched-mib` MiB into a server built as grpc-js ships (64 KiB receive window,
 * `grpc-node.flow_control_window` ignored), to show the ceiling `common/grpc-window.ts` removes:
 * at most 64 KiB per round trip, about 2 MB/s.
 *
 * Figures: `wanMBs` (target ≥ 200) and `wanOverRawTls` (target ≥ 0.7); 1 MB = 10^6 bytes.
 */
import type { Benchmark } from './registry.js';
import { cpuLine, runUploads, startProxyPeer } from './tools/peers.js';
import { SINK_DESCRIPTION, startGrpcSink, startTlsSink, type Sink } from './tools/upload-sink.js';
import { MiB, ackWindowBytes, fixed, intArg, provisionBenchPki, sender } from './tools/upload-setup.js';

const ONE_WAY_DELAY_MS = 15;

export const wan: Benchmark = {
  async run(args, log) {
    const bytes = intArg(args, 'mib', 1024) * MiB;
    const unpatchedBytes = intArg(args, 'unpatched-mib', 32) * MiB;
    const reps = intArg(args, 'reps', 2);
    const pki = await provisionBenchPki(1);
    const sinks: Sink[] = [];
    const proxies: { stop(): void }[] = [];
    /** A receiver reached through its own delay proxy; returns the proxy's port. */
    const behindProxy = async (sink: Sink): Promise<number> => {
      sinks.push(sink);
      const proxy = await startProxyPeer(sink.port, ONE_WAY_DELAY_MS);
      proxies.push(proxy);
      return proxy.port;
    };
    try {
      const grpcPort = await behindProxy(await startGrpcSink({ tls: pki.coordinator, windowFix: true, ackWindowBytes: ackWindowBytes(1) }));
      const unpatchedPort = await behindProxy(await startGrpcSink({ tls: pki.coordinator, windowFix: false, ackWindowBytes: ackWindowBytes(1) }));
      const tlsPort = await behindProxy(await startTlsSink(pki.coordinator));
      const site = pki.sites[0]!;
      log(`wan: +${2 * ONE_WAY_DELAY_MS} ms round trip (delay proxy, ${ONE_WAY_DELAY_MS} ms each way), mTLS, separate processes; ${SINK_DESCRIPTION}`);
      let best = { grpc: 0, tls: 0 };
      for (let rep = 0; rep < reps; rep++) {
        const order: ('grpc' | 'tls')[] = rep % 2 === 0 ? ['tls', 'grpc'] : ['grpc', 'tls'];
        for (const which of order) {
          const f = await runUploads([sender(which, which === 'grpc' ? grpcPort : tlsPort, site, bytes)]);
          log(`  rep ${rep + 1} ${which === 'grpc' ? 'gRPC (coordinator server)' : 'raw TLS                 '}: ${fixed(f.mbPerS)} MB/s (${bytes / MiB} MiB in ${f.seconds.toFixed(2)} s); ${cpuLine(f)}`);
          best = { ...best, [which]: Math.max(best[which], f.mbPerS) };
        }
      }
      const unpatched = await runUploads([sender('grpc', unpatchedPort, site, unpatchedBytes)]);
      log(`  gRPC, grpc-js server as shipped (64 KiB window): ${fixed(unpatched.mbPerS, 2)} MB/s (${unpatchedBytes / MiB} MiB in ${unpatched.seconds.toFixed(2)} s)`);
      const ratio = best.grpc / best.tls;
      log(`wan: gRPC ${fixed(best.grpc)} MB/s (target ≥ 200), raw TLS ${fixed(best.tls)} MB/s, ratio ${ratio.toFixed(3)} (target ≥ 0.7); unpatched grpc-js ${fixed(unpatched.mbPerS, 2)} MB/s`);
      return {
        wanMBs: fixed(best.grpc),
        wanRawTlsMBs: fixed(best.tls),
        wanOverRawTls: fixed(ratio, 3),
        wanUnpatchedMBs: fixed(unpatched.mbPerS, 2),
        rttAddedMs: 2 * ONE_WAY_DELAY_MS,
        bytes,
        unpatchedBytes,
        receiver: SINK_DESCRIPTION,
      };
    } finally {
      for (const p of proxies) p.stop();
      for (const s of sinks) await s.close();
      await pki.cleanup();
    }
  },
};
