/**
 * `npm run bench -- transport [--json] [--mib 2048] [--site-mib 256] [--reps 2]`: uploads to the
 * coordinator over gRPC with mTLS on loopback, against a plain mTLS socket moving the same bytes.
 *
 * One site process uploads `--mib` MiB with `SiteService.Upload` (the agent's own client, 4 MiB
 * chunks with CRC32C, the acknowledged window) into a gRPC server built as the coordinator builds
 * its own; a second pair of processes moves the same bytes over raw TLS. The two alternate `--reps`
 * times and the best of each is kept, since other processes on a shared machine only ever slow a
 * run down. Then 8 site processes upload `--site-mib` MiB each at once, over gRPC and over raw TLS.
 *
 * Figures: `grpcOverRawTls` (target ≥ 0.7) and `sites8MBs` (total MB/s, 1 MB = 10^6 bytes).
 */
import type { Benchmark } from './registry.js';
import { cpuLine, runUploads, type UploadFigures } from './tools/peers.js';
import { SINK_DESCRIPTION, startGrpcSink, startTlsSink } from './tools/upload-sink.js';
import { MiB, ackWindowBytes, fixed, intArg, provisionBenchPki, sender } from './tools/upload-setup.js';

const SITES = 8;

/** Best (fastest) of alternating runs of two transports, and every run for the log. */
async function alternate(
  reps: number,
  runs: Record<'grpc' | 'tls', () => Promise<UploadFigures>>,
  log: (line: string) => void,
): Promise<Record<'grpc' | 'tls', UploadFigures>> {
  const best: Partial<Record<'grpc' | 'tls', UploadFigures>> = {};
  for (let rep = 0; rep < reps; rep++) {
    // Alternate which goes first, so a burst of load elsewhere does not always hit the same one.
    const order: ('grpc' | 'tls')[] = rep % 2 === 0 ? ['tls', 'grpc'] : ['grpc', 'tls'];
    for (const which of order) {
      const f = await runs[which]();
      log(`  rep ${rep + 1} ${which === 'grpc' ? 'gRPC   ' : 'raw TLS'}: ${fixed(f.mbPerS)} MB/s (${(f.bytes / MiB).toFixed(0)} MiB in ${f.seconds.toFixed(2)} s); ${cpuLine(f)}`);
      if (!best[which] || f.mbPerS > best[which]!.mbPerS) best[which] = f;
    }
  }
  return { grpc: best.grpc!, tls: best.tls! };
}

export const transport: Benchmark = {
  async run(args, log) {
    const bytes = intArg(args, 'mib', 2048) * MiB;
    const siteBytes = intArg(args, 'site-mib', 256) * MiB;
    const reps = intArg(args, 'reps', 2);
    const pki = await provisionBenchPki(SITES);
    const grpcSink = await startGrpcSink({ tls: pki.coordinator, windowFix: true, ackWindowBytes: ackWindowBytes(1) });
    const grpcSinkMany = await startGrpcSink({ tls: pki.coordinator, windowFix: true, ackWindowBytes: ackWindowBytes(SITES) });
    const tlsSink = await startTlsSink(pki.coordinator);
    try {
      log(`transport: loopback, mTLS, separate processes; 4 MiB chunks; ${SINK_DESCRIPTION}`);
      log(`one site, ${bytes / MiB} MiB (acknowledged window ${ackWindowBytes(1) / MiB} MiB), ${reps} alternating rep(s), best kept:`);
      const site0 = pki.sites[0]!;
      const one = await alternate(
        reps,
        {
          grpc: () => runUploads([sender('grpc', grpcSink.port, site0, bytes)]),
          tls: () => runUploads([sender('tls', tlsSink.port, site0, bytes)]),
        },
        log,
      );
      const ratio = one.grpc.mbPerS / one.tls.mbPerS;
      log(`one site: gRPC ${fixed(one.grpc.mbPerS)} MB/s, raw TLS ${fixed(one.tls.mbPerS)} MB/s, gRPC ÷ raw TLS = ${ratio.toFixed(3)} (target ≥ 0.7)`);

      log(`${SITES} sites at once, ${siteBytes / MiB} MiB each (acknowledged window ${ackWindowBytes(SITES) / MiB} MiB each):`);
      const many = await alternate(
        1,
        {
          grpc: () => runUploads(pki.sites.map((tls) => sender('grpc', grpcSinkMany.port, tls, siteBytes))),
          tls: () => runUploads(pki.sites.map((tls) => sender('tls', tlsSink.port, tls, siteBytes))),
        },
        log,
      );
      log(`${SITES} sites: gRPC ${fixed(many.grpc.mbPerS)} MB/s total, raw TLS ${fixed(many.tls.mbPerS)} MB/s total`);
      return {
        grpcMBs: fixed(one.grpc.mbPerS),
        rawTlsMBs: fixed(one.tls.mbPerS),
        grpcOverRawTls: fixed(ratio, 3),
        sites8MBs: fixed(many.grpc.mbPerS),
        sites8RawTlsMBs: fixed(many.tls.mbPerS),
        // CPU per byte (sender + receiver) barely depends on load elsewhere, unlike MB/s.
        grpcCpuSPerGB: fixed(one.grpc.senderCpuSPerGB + one.grpc.receiverCpuSPerGB, 2),
        rawTlsCpuSPerGB: fixed(one.tls.senderCpuSPerGB + one.tls.receiverCpuSPerGB, 2),
        bytes,
        siteBytes,
        receiver: SINK_DESCRIPTION,
      };
    } finally {
      await grpcSink.close();
      await grpcSinkMany.close();
      await tlsSink.close();
      await pki.cleanup();
    }
  },
};
