/**
 * `fedhpc admin dashboard-token`: a token that lets a browser into the coordinator's dashboard,
 * made here and signed with the admin's own key (coordinator/dashboard/token.ts). The coordinator
 * is not asked: it checks the token against the federation CA when the browser exchanges it, once,
 * for a session cookie.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createDashboardToken } from '../coordinator/index.js';
import { safeJson } from '../common/text.js';
import { loadAdminConfig } from './admin.js';
import { UsageError } from './usage-error.js';

/** Token lifetime unless `--valid-minutes` says otherwise. */
export const DEFAULT_TOKEN_MINUTES = 60;
/** The longest lifetime asked for here; the dashboard caps it too (`dashboard.maxTokenLifetimeS`, a day by default). */
const MAX_TOKEN_MINUTES = 30 * 24 * 60;

/** Runs the command; returns the exit code. */
export function dashboardTokenCommand(args: string[], out: (s: string) => void): number {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string' }, 'valid-minutes': { type: 'string' }, url: { type: 'string' }, json: { type: 'boolean', default: false } },
    strict: true,
  });
  if (!values.config) throw new UsageError('admin dashboard-token needs --config ADMIN.json (the admin certificate and key sign the token)');
  const minutes = values['valid-minutes'] === undefined ? DEFAULT_TOKEN_MINUTES : Number(values['valid-minutes']);
  if (!Number.isSafeInteger(minutes) || minutes < 1 || minutes > MAX_TOKEN_MINUTES) {
    throw new UsageError(`--valid-minutes must be an integer from 1 to ${MAX_TOKEN_MINUTES}, got ${JSON.stringify(values['valid-minutes'])}`);
  }
  const cfg = loadAdminConfig(values.config);
  const url = values.url ?? cfg.dashboard;
  if (url !== undefined && !/^https?:\/\/[^\s/?#]+\/?$/.test(url)) throw new UsageError(`--url must be the dashboard's http(s)://host:port, got ${JSON.stringify(url)}`);
  const t = createDashboardToken({ certPem: readFileSync(cfg.tls.cert, 'utf8'), keyPem: readFileSync(cfg.tls.key, 'utf8'), validMs: minutes * 60_000 });
  // The token travels in the fragment: a browser never sends it to a server, so no log keeps it.
  const loginUrl = url === undefined ? undefined : `${url.replace(/\/$/, '')}/login#token=${t.token}`;
  const result = { token: t.token, admin: t.admin, federation: t.federation, expiresAt: new Date(t.expiresMs).toISOString(), ...(loginUrl ? { loginUrl } : {}) };
  if (values.json) {
    out(safeJson(result));
  } else {
    out(`dashboard token for admin ${t.admin} of ${t.federation}, valid until ${result.expiresAt}; exchange it once:`);
    out(loginUrl ?? t.token);
  }
  return 0;
}
