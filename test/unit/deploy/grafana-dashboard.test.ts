/**
 * deploy/grafana/fedhpc.json is the dashboard operators import. A panel whose query names a metric or
 * label that no longer exists shows "No data" without an error, so a rename would go unnoticed: every
 * query's `fedhpc_*` series and every label it matches or groups by must be one that the
 * coordinator's and the agent's registries really define, built as coordinator.ts and cli/main.ts
 * build them. The layout must not overlap and every panel must query the dashboard's datasource
 * variable, so that the JSON imports into any Grafana as it is.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerUsageMetrics } from '../../../coordinator/audit/usage.js';
import { EventBus } from '../../../coordinator/observe/events.js';
import { CoordinatorMetrics } from '../../../coordinator/observe/metrics.js';
import { registerRunMetrics, type RunSnapshot } from '../../../coordinator/observe/run-metrics.js';
import { RoundTimeline } from '../../../coordinator/shell/timeline.js';
import { SiteRegistry } from '../../../coordinator/sites/registry.js';
import { AgentMetrics } from '../../../site-agent/metrics.js';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));

interface GridPos {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}
interface DataSourceRef {
  readonly type?: string;
  readonly uid?: string;
}
interface Target {
  readonly refId?: string;
  readonly expr?: string;
  readonly datasource?: DataSourceRef;
}
interface Panel {
  readonly id?: number;
  readonly type: string;
  readonly title?: string;
  readonly gridPos?: GridPos;
  readonly datasource?: DataSourceRef;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { readonly query?: string };
  readonly datasource?: DataSourceRef;
  readonly multi?: boolean;
  readonly includeAll?: boolean;
}
interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly Variable[] };
}

const DASHBOARD = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/fedhpc.json'), 'utf8')) as Dashboard;
/** Every panel, those inside collapsed rows included. */
const PANELS: readonly Panel[] = DASHBOARD.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const QUERY_PANELS = PANELS.filter((p) => p.type !== 'row');
const VARIABLES = DASHBOARD.templating.list;
const DATASOURCE = '${DS_PROMETHEUS}';
/** Grafana's own variables that queries may use. */
const BUILTIN_VARIABLES = new Set(['__rate_interval', '__interval', '__range', '__range_s', '__range_ms', '__interval_ms']);

/** Series name -> the label names its samples carry. */
type Series = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * The series `registry` exposes with their labels: each family's own label names (prom-client keeps
 * them on the metric), the registry's default labels (read off the samples it returns), and for a
 * histogram its `_bucket` (with `le`), `_sum` and `_count`.
 */
async function seriesOf(registry: Registry): Promise<Map<string, Set<string>>> {
  const families = await registry.getMetricsAsJSON();
  const own = new Map<string, readonly string[]>();
  for (const f of families) {
    const labelNames = (registry.getSingleMetric(f.name) as unknown as { labelNames?: readonly string[] } | undefined)?.labelNames;
    expect(Array.isArray(labelNames), `label names of ${f.name}`).toBe(true);
    own.set(f.name, labelNames ?? []);
  }
  const defaults = new Set<string>();
  for (const f of families) {
    for (const v of f.values) for (const l of Object.keys(v.labels)) if (!own.get(f.name)!.includes(l) && l !== 'le' && l !== 'quantile') defaults.add(l);
  }
  const series = new Map<string, Set<string>>();
  for (const f of families) {
    const labels = [...own.get(f.name)!, ...defaults];
    // prom-client's typings say an enum; at run time the type is the exposition's word.
    const type = String(f.type);
    if (type === 'histogram') {
      series.set(`${f.name}_bucket`, new Set([...labels, 'le']));
      series.set(`${f.name}_sum`, new Set(labels));
      series.set(`${f.name}_count`, new Set(labels));
    } else if (type === 'summary') {
      series.set(f.name, new Set([...labels, 'quantile']));
      series.set(`${f.name}_sum`, new Set(labels));
      series.set(`${f.name}_count`, new Set(labels));
    } else {
      series.set(f.name, new Set(labels));
    }
  }
  return series;
}

/** The coordinator's registry as coordinator.ts builds it: CoordinatorMetrics, then the run view on it. */
function coordinatorRegistry(): Registry {
  const bus = new EventBus(() => 0);
  const sites = new SiteRegistry(() => 0);
  const metrics = new CoordinatorMetrics({
    bus,
    sites,
    timeline: new RoundTimeline(bus),
    now: () => 0,
    federation: 'test-fed',
    budget: () => ({ totalBytes: 1024, usedBytes: 0, waiting: 0 }),
  });
  const run: RunSnapshot = {
    runId: 'run-1',
    state: 'running',
    round: 1,
    attempt: 1,
    phase: 'training',
    phaseDeadlineMs: 0,
    roundsPlanned: 3,
    roundsCommitted: 0,
    maxAppliedStaleness: 0,
    appliedStalenessLimit: 0,
    lastRoundBytesUp: 0,
  };
  registerRunMetrics({ registry: metrics.registry, bus, sites, run: () => run });
  registerUsageMetrics(metrics.registry, () => []);
  return metrics.registry;
}

/** Every series of the coordinator and of an agent. */
async function allSeries(): Promise<Series> {
  const coordinator = await seriesOf(coordinatorRegistry());
  const agent = await seriesOf(new AgentMetrics('site-1', () => 0).registry);
  const shared = [...agent.keys()].filter((n) => coordinator.has(n));
  expect(shared, 'series both the coordinator and the agent define').toEqual([]);
  return new Map([...coordinator, ...agent]);
}

/** `expr` with its string literals emptied, so that label values are never read as names. */
const withoutStrings = (expr: string): string => expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');

/**
 * What is wrong with `expr`: a `fedhpc_*` series that `series` does not define, a label matched in
 * its `{…}` that the series does not carry, a label of a `by`/`without`/`on`/`ignoring`/`group_*`
 * clause that not every series of the expression carries, a variable that is not defined (each once).
 */
function problemsOf(expr: string, series: Series, variables: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const text = withoutStrings(expr);
  const used = [...text.matchAll(/\b(fedhpc_[a-z0-9_]+)\b\s*(\{[^}]*\})?/g)];
  if (used.length === 0) problems.push('names no fedhpc_ series');
  for (const [, name, matchers] of used) {
    const labels = series.get(name!);
    if (labels === undefined) {
      problems.push(`${name}: no such series`);
      continue;
    }
    for (const [, label] of (matchers ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      if (!labels.has(label!)) problems.push(`${name}{${label}}: no such label`);
    }
  }
  for (const [, clause, list] of text.matchAll(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const label of list!.split(',').map((l) => l.trim()).filter((l) => l !== '')) {
      for (const [, name] of used) {
        const labels = series.get(name!);
        if (labels !== undefined && !labels.has(label)) problems.push(`${clause} (${label}): ${name} has no such label`);
      }
    }
  }
  const labelValues = /label_values\(\s*(fedhpc_[a-z0-9_]+)\b[^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)/.exec(text);
  if (labelValues && series.get(labelValues[1]!)?.has(labelValues[2]!) === false) problems.push(`label_values(${labelValues[1]}, ${labelValues[2]}): no such label`);
  for (const [, a, b] of expr.matchAll(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|([A-Za-z_][A-Za-z0-9_]*))/g)) {
    const name = a ?? b!;
    if (!variables.has(name) && !BUILTIN_VARIABLES.has(name)) problems.push(`$${name}: no such variable`);
  }
  return [...new Set(problems)];
}

const variableQuery = (v: Variable): string => (typeof v.query === 'string' ? v.query : (v.query?.query ?? ''));

describe('deploy/grafana/fedhpc.json', () => {
  const variables = new Set(VARIABLES.map((v) => v.name));

  it('is a schema-39 dashboard with uid fedhpc, a Prometheus datasource variable, and site chosen from the real site label', () => {
    expect(DASHBOARD).toMatchObject({ uid: 'fedhpc', title: 'fedhpc federation', schemaVersion: 39 });
    expect(VARIABLES.find((v) => v.name === 'DS_PROMETHEUS')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const site = VARIABLES.find((v) => v.name === 'site');
    expect(site).toMatchObject({ type: 'query', multi: true, includeAll: true, datasource: { uid: DATASOURCE } });
    expect(variableQuery(site!)).toMatch(/^label_values\(fedhpc_site_connected\b.*, site\)$/);
    expect(variables.size, 'variable names are unique').toBe(VARIABLES.length);
    expect(PANELS.filter((p) => p.type === 'row').map((p) => p.title)).toEqual(['Run', 'Sites', 'Data plane', 'GPU-hours', 'Agents']);
  });

  it('queries only series and labels that the coordinator and agent registries define', async () => {
    const series = await allSeries();
    const problems: string[] = [];
    for (const p of QUERY_PANELS) {
      expect(p.targets?.length ?? 0, `targets of "${p.title}"`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) for (const problem of problemsOf(t.expr ?? '', series, variables)) problems.push(`"${p.title}" ${t.refId}: ${problem}`);
    }
    for (const v of VARIABLES.filter((v) => v.type === 'query')) {
      for (const problem of problemsOf(variableQuery(v), series, variables)) problems.push(`variable ${v.name}: ${problem}`);
    }
    expect(problems).toEqual([]);
  });

  it('catches a renamed series, an unknown label and an undefined variable (the check itself)', async () => {
    const series = await allSeries();
    expect(problemsOf('sum by (outcome) (rate(fedhpc_rounds_total{federation=~"$federation"}[5m]))', series, variables)).toEqual([]);
    expect(problemsOf('histogram_quantile(0.9, sum by (le, phase) (rate(fedhpc_phase_duration_seconds_bucket[5m])))', series, variables)).toEqual([]);
    expect(problemsOf('rate(fedhpc_round_total[5m])', series, variables)).toEqual(['fedhpc_round_total: no such series']);
    expect(problemsOf('fedhpc_phase_duration_seconds', series, variables)).toEqual(['fedhpc_phase_duration_seconds: no such series']);
    expect(problemsOf('fedhpc_site_busy_ratio{sites="a=b"}', series, variables)).toEqual(['fedhpc_site_busy_ratio{sites}: no such label']);
    expect(problemsOf('sum by (le) (fedhpc_phase_duration_seconds_sum)', series, variables)).toEqual(['by (le): fedhpc_phase_duration_seconds_sum has no such label']);
    expect(problemsOf('fedhpc_agent_connected{site=~"$sites"}', series, variables)).toEqual(['$sites: no such variable']);
    expect(problemsOf('up', series, variables)).toEqual(['names no fedhpc_ series']);
  });

  it('gives every panel and query the datasource variable, unique ids and refIds, and only timeseries, stat and table panels', () => {
    const ids = PANELS.map((p) => p.id);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);
    for (const p of QUERY_PANELS) {
      expect(['timeseries', 'stat', 'table'], `type of "${p.title}"`).toContain(p.type);
      expect(p.datasource, `datasource of "${p.title}"`).toEqual({ type: 'prometheus', uid: DATASOURCE });
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, `refIds of "${p.title}"`).toBe(refIds.length);
      for (const t of p.targets ?? []) expect(t.datasource, `datasource of "${p.title}" ${t.refId}`).toEqual({ type: 'prometheus', uid: DATASOURCE });
    }
  });

  it('lays panels out on the 24-column grid without overlap', () => {
    const boxes = PANELS.map((p) => ({ title: p.title, g: p.gridPos! }));
    for (const { title, g } of boxes) {
      expect(g, `gridPos of "${title}"`).toBeDefined();
      expect(g.x >= 0 && g.y >= 0 && g.w > 0 && g.h > 0 && g.x + g.w <= 24, `gridPos of "${title}": ${JSON.stringify(g)}`).toBe(true);
    }
    const overlaps: string[] = [];
    boxes.forEach((a, i) =>
      boxes.slice(i + 1).forEach((b) => {
        if (a.g.x < b.g.x + b.g.w && b.g.x < a.g.x + a.g.w && a.g.y < b.g.y + b.g.h && b.g.y < a.g.y + a.g.h) overlaps.push(`"${a.title}" and "${b.title}"`);
      }),
    );
    expect(overlaps).toEqual([]);
  });
});
