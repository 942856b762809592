/**
 * `fedhpc provision --coordinators a,b`: the list of coordinators (a leader and its standbys,
 * issue 19), each `host:port` or `name=host:port`. The name is the coordinator's certificate CN and
 * its folder, `coordinators/<name>/`; without one it is made from the host (`coord-a.example.org`
 * → `coord-a-example-org`, `127.0.0.1` → `127-0-0-1`). `--aggregators` lists aggregator shards
 * (issue 22) the same way, under `aggregators/<name>/`.
 */
import { COORDINATOR_ADDRESS } from '../common/coordinator-verdict.js';
import { targetHost } from '../common/grpc-tls.js';
import type { CoordinatorEndpoint } from '../simulate/index.js';
import { UsageError } from './usage-error.js';

/** The names the PKI takes for a member (coordinator/pki/names.ts `ID_PATTERN`). */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * Parses `--coordinators`: each entry's name, the address members dial, and the address it binds
 * (`0.0.0.0` and the entry's port, as `--coordinator` binds). Refuses an empty list, a malformed
 * entry, a name the PKI would refuse, and a name or address given twice, naming the entry.
 */
export function parseCoordinators(text: string): CoordinatorEndpoint[] {
  return parseEndpoints('coordinators', 'coordinator', text);
}

/** Parses `--aggregators` as {@link parseCoordinators} parses `--coordinators`. */
export function parseAggregators(text: string): CoordinatorEndpoint[] {
  return parseEndpoints('aggregators', 'aggregator', text);
}

function parseEndpoints(option: string, member: string, text: string): CoordinatorEndpoint[] {
  const entries = text.split(',').map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) throw new UsageError(`--${option} needs at least one host:port (or name=host:port), comma-separated`);
  const out: CoordinatorEndpoint[] = [];
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const address = eq >= 0 ? entry.slice(eq + 1) : entry;
    if (!COORDINATOR_ADDRESS.test(address)) throw new UsageError(`--${option}: ${JSON.stringify(entry)} is not host:port or name=host:port`);
    const name = eq >= 0 ? entry.slice(0, eq) : nameOf(targetHost(address));
    if (!NAME.test(name)) {
      throw new UsageError(`--${option}: the name ${JSON.stringify(name)} of ${JSON.stringify(entry)} is not lowercase letters, digits and - (at most 63); give one as name=host:port`);
    }
    if (out.some((c) => c.name === name)) throw new UsageError(`--${option}: two ${member}s are named ${name}; give distinct names as name=host:port`);
    if (out.some((c) => c.address === address)) throw new UsageError(`--${option}: ${address} is listed twice`);
    out.push({ name, address, listen: `0.0.0.0:${address.slice(address.lastIndexOf(':') + 1)}` });
  }
  return out;
}

/** A name made from a host: lowercased, each run of other characters one `-`, none at either end. */
function nameOf(host: string): string {
  return host.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}
