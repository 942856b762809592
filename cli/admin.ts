/** `fedhpc admin status | sites | rounds`: wiring from arguments to the admin client and output. */
import { z } from 'zod';
import { loadConfigFile } from '../common/config-file.js';
import { AdminClient } from '../coordinator/index.js';
import { formatBytes, formatTable } from './table.js';

const adminConfigSchema = z
  .object({
    coordinator: z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port'),
    serverName: z.string().optional(),
    tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict(),
  })
  .strict();

export const ADMIN_COMMANDS = ['status', 'sites', 'rounds'] as const;

/** Runs one admin command and writes its output; returns the exit code. */
export async function runAdmin(command: string, configFile: string, json: boolean, out: (s: string) => void): Promise<number> {
  const cfg = loadConfigFile(configFile, adminConfigSchema, (c, rel) => ({
    ...c,
    tls: { ca: rel(c.tls.ca), cert: rel(c.tls.cert), key: rel(c.tls.key) },
  }));
  const client = new AdminClient(cfg);
  try {
    if (command === 'status') {
      const s = await client.status();
      if (json) return out(JSON.stringify(s)), 0;
      out(
        formatTable(
          ['field', 'value'],
          [
            ['federation', s.federation],
            ['run', `${s.runId} (${s.runState})`],
            ['round', s.phase ? `${s.round}.${s.attempt} ${s.phase}` : '-'],
            ['committed', `${s.roundsCommitted} / ${s.roundsTotal}`],
            ['global model', s.globalModelSha256],
            ['sites', `${s.sitesConnected} connected / ${s.sitesKnown} known`],
            ['uptime', `${(Number(s.uptimeMs) / 1000).toFixed(0)} s`],
          ],
        ),
      );
    } else if (command === 'sites') {
      const { sites } = await client.sites();
      if (json) return out(JSON.stringify(sites)), 0;
      out(
        formatTable(
          ['site', 'connected', 'activity', 'progress', 'up', 'down', 'rounds', 'agent'],
          sites.map((s) => [
            s.siteId,
            s.connected ? 'yes' : 'no',
            s.activity,
            s.progress >= 0 ? `${(s.progress * 100).toFixed(0)}%` : '-',
            formatBytes(Number(s.bytesUp)),
            formatBytes(Number(s.bytesDown)),
            s.roundsContributed,
            s.agentVersion,
          ].map(String)),
        ),
      );
    } else if (command === 'rounds') {
      const r = await client.rounds();
      if (json) return out(JSON.stringify(r)), 0;
      out(
        formatTable(
          ['round', 'outcome', 'participants', 'dropped', 'eval loss', 'up', 'model'],
          r.rounds.map((x) => [
            `${x.round}.${x.attempt}`,
            x.outcome,
            x.participants.join(',') || '-',
            x.dropped.join(',') || (x.reason ? x.reason : '-'),
            x.hasEval ? x.evalLoss.toFixed(4) : '-',
            formatBytes(Number(x.bytesUp)),
            x.modelSha256.slice(0, 12) || '-',
          ]),
        ),
      );
    } else {
      throw new Error(`unknown admin command ${JSON.stringify(command)} (expected ${ADMIN_COMMANDS.join(', ')})`);
    }
    return 0;
  } finally {
    client.close();
  }
}
