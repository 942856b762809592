/**
 * `npm run bench -- transport [--json] [--mib 2048] [--site-mib 256] [--reps 2]`: uploads to the
 * coordinator over gRPC with mTLS on loopback, against a plain mTLS socket moving the same bytes.
 *
 * One site process uploads `--mib` MiB with `SiteService.Upload` (the agent's own client and
 * codec, 4 MiB chunks with CRC32C, the acknowledged window) into a gRPC server built as the
 * coordinator builds its own; a second pair of processes moves the same bytes over raw TLS. The two alternate `--reps`
 * times and the best of each is kept, since other processes on a shared machine only ever slow a
 * run down. Then 8 site processes upload `--site-mib` MiB each at once, over gRPC and over raw TLS,
 * alternating as many times, best kept.
 * Every sender connects and moves a few chunks before the clock starts (bench/tools/upload-send.ts).
 *
 * Figures: `grpcOverRawTls` (target ≥ 0.7), `sites8MBs` (total MB/s, 1 MB = 10^6 bytes) and
 * `sites8OverRawTls` (target ≥ 0.7), and `senderCpuPerGbOverRawTls`: the gRPC sender's CPU
 * seconds per GB over the raw TLS sender's, each the least of its one-site reps (target ≤ 1.5).
 * CPU per byte is the steadier figure on a shared machine: load elsewhere slows a run down but
 * changes it much less.
 */
import type { Benchmark } from './registry.js';
import { cpuLine, runUploads, type UploadFigures } from './tools/peers.js';
import { SINK_DESCRIPTION, startGrpcSink, startTlsSink } from './tools/upload-sink.js';
import { MiB, ackWindowBytes, fixed, intArg, provisionBenchPki, sender } from './tools/upload-setup.js';

const SITES = 8;

/** Best (fastest) of alternating runs of two transports, each one's least sender CPU per GB, and every run for the log. */
async function alternate(
  reps: number,
  runs: Record<'grpc' | 'tls', () => Promise<UploadFigures>>,
  log: (line: string) => void,
): Promise<Record<'grpc' | 'tls', UploadFigures> & { senderCpuSPerGB: Record<'grpc' | 'tls', number> }> {
  const best: Partial<Record<'grpc' | 'tls', UploadFigures>> = {};
  const cpu = { grpc: Infinity, tls: Infinity };
  for (let rep = 0; rep < reps; rep++) {
    // Alternate which goes first, so a burst of load elsewhere does not always hit the same one.
    const order: ('grpc' | 'tls')[] = rep % 2 === 0 ? ['tls', 'grpc'] : ['grpc', 'tls'];
    for (const which of order) {
      const f = await runs[which]();
      log(`  rep ${rep + 1} ${which === 'grpc' ? 'gRPC   ' : 'raw TLS'}: ${fixed(f.mbPerS)} MB/s (${(f.bytes / MiB).toFixed(0)} MiB in ${f.seconds.toFixed(2)} s); ${cpuLine(f)}`);
      if (!best[which] || f.mbPerS > best[which]!.mbPerS) best[which] = f;
      // Load elsewhere only ever adds CPU (contention, a collection that ran late): the least is the cost.
      cpu[which] = Math.min(cpu[which], f.senderCpuSPerGB);
    }
  }
  return { grpc: best.grpc!, tls: best.tls!, senderCpuSPerGB: cpu };
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
      // As many alternating reps as the one site, best kept: a single run of each put the
      // ratio anywhere from 0.59 to 0.99 on this machine.
      const many = await alternate(
        reps,
        {
          grpc: () => runUploads(pki.sites.map((tls) => sender('grpc', grpcSinkMany.port, tls, siteBytes))),
          tls: () => runUploads(pki.sites.map((tls) => sender('tls', tlsSink.port, tls, siteBytes))),
        },
        log,
      );
      const sites8Ratio = many.grpc.mbPerS / many.tls.mbPerS;
      log(`${SITES} sites: gRPC ${fixed(many.grpc.mbPerS)} MB/s total, raw TLS ${fixed(many.tls.mbPerS)} MB/s total, gRPC ÷ raw TLS = ${sites8Ratio.toFixed(3)} (target ≥ 0.7)`);
      const senderRatio = one.senderCpuSPerGB.grpc / one.senderCpuSPerGB.tls;
      log(`one site, least sender CPU s/GB over the reps: gRPC ${one.senderCpuSPerGB.grpc.toFixed(2)}, raw TLS ${one.senderCpuSPerGB.tls.toFixed(2)}, gRPC ÷ raw TLS = ${senderRatio.toFixed(3)} (target ≤ 1.5)`);
      return {
        grpcMBs: fixed(one.grpc.mbPerS),
        rawTlsMBs: fixed(one.tls.mbPerS),
        grpcOverRawTls: fixed(ratio, 3),
        sites8MBs: fixed(many.grpc.mbPerS),
        sites8RawTlsMBs: fixed(many.tls.mbPerS),
        sites8OverRawTls: fixed(sites8Ratio, 3),
        senderCpuPerGbOverRawTls: fixed(senderRatio, 3),
        grpcSenderCpuSPerGB: fixed(one.senderCpuSPerGB.grpc, 2),
        rawTlsSenderCpuSPerGB: fixed(one.senderCpuSPerGB.tls, 2),
        sites8SenderCpuSPerGB: fixed(many.senderCpuSPerGB.grpc, 2),
        sites8RawTlsSenderCpuSPerGB: fixed(many.senderCpuSPerGB.tls, 2),
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
