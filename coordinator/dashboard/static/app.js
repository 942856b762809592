// The dashboard pages: the run, rounds (loss curves, phase timings), sites, transfers and the audit
// chain. Each page reads its JSON view (/api/<page>) and is read again when the live event stream
// (/api/events, server-sent events fed by the coordinator's event bus) says something changed.
// Read-only: nothing here changes the federation.
import { bar, bytes, duration, h, short, table, time } from './dom.js';

/** @typedef {Record<string, any>} Json */

/** uPlot, loaded by its own script tag from the bundled copy (no CDN). */
const UPlot = /** @type {{ new (opts: Json, data: unknown[], el: HTMLElement): { destroy(): void } }} */ (Reflect.get(globalThis, 'uPlot'));

const view = /** @type {HTMLElement} */ (document.getElementById('view'));
const live = /** @type {HTMLElement} */ (document.getElementById('live'));
const banner = /** @type {HTMLElement} */ (document.getElementById('banner'));
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const PHASES = ['open', 'keys', 'shares', 'training', 'upload', 'unmask', 'aggregate', 'commit'];

/** Charts of the page shown, destroyed when it is left. @type {{ destroy(): void }[]} */
let charts = [];
/** The server's clock minus ours, for the deadline countdown. */
let skewMs = 0;
/** The overview shown last, for the countdown. @type {Json | null} */
let overview = null;
/** Renders so far, per page (tests and screenshots wait on it). */
let renders = 0;

/** @param {string} path */
async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401) {
    location.assign('/login');
    throw new Error('signed out');
  }
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return /** @type {Promise<Json>} */ (res.json());
}

/** @type {Record<string, () => Promise<HTMLElement>>} */
const PAGES = {
  '/': renderRun,
  '/rounds': renderRounds,
  '/sites': renderSites,
  '/transfers': async () => renderTransfers(await getJson('/api/transfers')),
  '/audit': renderAudit,
};

function page() {
  return PAGES[location.pathname] ? location.pathname : '/';
}

let rendering = Promise.resolve();
let again = false;
let pending = false;

/** Renders the current page; calls during a render coalesce into one more. */
function refresh() {
  if (pending) {
    again = true;
    return;
  }
  pending = true;
  rendering = rendering
    .then(async () => {
      const p = page();
      const el = await (PAGES[p] ?? renderRun)();
      for (const c of charts.splice(0)) c.destroy();
      view.replaceChildren(el);
      // Charts measure their container: built once it is in the page.
      for (const build of chartQueue.splice(0)) charts.push(build());
      renders += 1;
      document.body.dataset['page'] = p;
      document.body.dataset['renders'] = String(renders);
      for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('data-page') === p);
    })
    .catch((err) => {
      view.replaceChildren(h('p', { class: 'error' }, `could not load: ${String(err)}`));
    })
    .finally(() => {
      pending = false;
      if (again) {
        again = false;
        refresh();
      }
    });
}

/** Charts to build after the page is in the document. @type {(() => { destroy(): void })[]} */
const chartQueue = [];

/** @param {string} title @param {...(import('./dom.js').Child | import('./dom.js').Child[])} rows */
function card(title, ...rows) {
  return h('section', { class: 'card' }, h('h2', null, title), ...rows);
}

/** @param {string} label @param {import('./dom.js').Child | import('./dom.js').Child[]} value @param {string} [id] */
function field(label, value, id) {
  return h('div', { class: 'field' }, h('span', { class: 'label' }, label), h('span', id ? { class: 'value', id } : { class: 'value' }, ...[value].flat()));
}

/** @param {Json} o */
function showRole(o) {
  // Issue 19: a standby coordinator says so and links to the leader; it never shows its state as the run's.
  if (o['role']?.kind === 'standby') {
    banner.hidden = false;
    const link = h('a', null, 'the leader');
    const url = String(o['role'].leaderUrl ?? '');
    if (/^https?:\/\//.test(url)) link.setAttribute('href', url);
    banner.replaceChildren(h('strong', null, 'This coordinator is a standby.'), ' The run is led by ', link, '.');
  } else {
    banner.hidden = true;
  }
}

async function renderRun() {
  const o = await getJson('/api/overview');
  overview = o;
  skewMs = Number(o['serverNowMs']) - Date.now();
  showRole(o);
  const fed = document.getElementById('federation');
  if (fed) fed.textContent = `${o['federation']} · coordinator ${o['coordinatorVersion']}`;
  const run = o['run'];
  const budget = o['uploadBudget'];
  const sites = card(
    'Sites',
    field('connected', `${o['sites'].connected} of ${o['sites'].known} known, ${o['sites'].members} members`),
    field('upload budget', bar(budget.totalBytes ? budget.usedBytes / budget.totalBytes : 0, `${bytes(budget.usedBytes)} of ${bytes(budget.totalBytes)}${budget.waiting ? `, ${budget.waiting} waiting` : ''}`)),
  );
  // Aggregator shards (issue 22): only when the coordinator names some.
  const shardList = /** @type {Json[]} */ (o['shards'] ?? []);
  const shards = shardList.length
    ? card(
        'Aggregator shards',
        table(
          ['shard', 'state', 'part (values)', 'free', 'parts received', 'model parts sent', 'problem'],
          shardList.map((s) => [
            `${s.index} ${s.shard} (${s.endpoint})`,
            String(s.state),
            s.endValue ? `[${s.firstValue}, ${s.endValue})` : '-',
            s.freeBytes ? bytes(s.freeBytes) : '-',
            s.uploadsAdmitted ? `${s.uploadsReceived} of ${s.uploadsAdmitted} (${bytes(s.bytesReceived)})` : '-',
            s.downloadsAdmitted || s.bytesSent ? `${s.downloadsServed} of ${s.downloadsAdmitted} (${bytes(s.bytesSent)} in all)` : '-',
            String(s.problem || ''),
          ]),
          'shards',
        ),
      )
    : null;
  if (!run) return h('div', { class: 'grid' }, card('Run', h('p', null, 'No run: the coordinator idles until an admin starts one (fedhpc admin start).')), sites, shards);
  const secure = run.secure;
  const strategy = run.strategy ?? {};
  const params = Object.entries(strategy).filter(([k]) => k !== 'name').map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ');
  return h(
    'div',
    { class: 'grid' },
    card(
      'Run',
      field('run', String(run.runId), 'run-id'),
      field('state', h('span', { class: `state ${String(run.state)}` }, String(run.state)), 'run-state'),
      field('rounds', bar(run.roundsPlanned ? run.roundsCommitted / run.roundsPlanned : 0, `${run.roundsCommitted} of ${run.roundsPlanned} committed`), 'run-rounds'),
      field('round', run.round ? `${run.round}.${run.attempt}` : 'between rounds', 'run-round'),
      field('phase', run.phase || '-', 'run-phase'),
      field('deadline', h('span', { id: 'countdown' }, countdown(run.phaseDeadlineMs))),
      field('global model', `${short(String(run.globalModelSha256))} (round ${run.modelRound})`),
    ),
    card(
      'Strategy',
      field('strategy', String(strategy.name ?? '-'), 'strategy'),
      field('parameters', params || '-'),
      field('weighting', String(run.weighting || '-')),
      field('encoding', String(run.encoding || '-')),
      field('sites per round', `at least ${run.minSites}${run.expectedSites.length ? ` of ${run.expectedSites.length} expected` : ''}, ${run.maxAttempts} attempts`),
    ),
    card(
      'Secure aggregation',
      secure
        ? [
            field('state', h('span', { class: 'state on' }, 'on (SecAgg+)'), 'secure-state'),
            field('threshold', `t = ${secure.threshold}`),
            field('fixed point', `${secure.quantBits} bits, modulus 2^${secure.modulusBits}, clip ${secure.clip}`),
            field('phase', ['keys', 'shares', 'unmask'].includes(run.phase) ? `${run.phase}${run.openAttempt?.step ? ` (${run.openAttempt.step})` : ''}` : run.phase ? 'not in a secure stage' : '-'),
          ]
        : field('state', h('span', { class: 'state off' }, 'off (plain rounds)'), 'secure-state'),
    ),
    sites,
    shards,
    card(
      'This attempt',
      run.openAttempt?.sites?.length
        ? table(['site', 'status', 'detail'], run.openAttempt.sites.map((/** @type {Json} */ s) => [String(s.site), String(s.status), String(s.detail ?? '')]), 'attempt-sites')
        : h('p', null, 'No attempt in progress.'),
    ),
  );
}

/** @param {number} deadlineMs */
function countdown(deadlineMs) {
  if (!deadlineMs) return '-';
  const left = deadlineMs - (Date.now() + skewMs);
  return left > 0 ? `${duration(left)} left (${time(deadlineMs)})` : `passed (${time(deadlineMs)})`;
}

setInterval(() => {
  const el = document.getElementById('countdown');
  const deadline = overview?.['run']?.phaseDeadlineMs;
  if (el && deadline !== undefined) el.textContent = countdown(deadline);
}, 1000);

async function renderRounds() {
  const r = await getJson('/api/rounds');
  const rounds = /** @type {Json[]} */ (r['rounds']);
  const committed = rounds.filter((x) => x.outcome === 'committed');
  const evaluated = committed.filter((x) => x.hasEval);
  const siteIds = [...new Set([...evaluated.flatMap((x) => x.evals.map((/** @type {Json} */ e) => String(e.siteId))), ...(r['baseline']?.sites ?? []).map((/** @type {Json} */ e) => String(e.siteId))])].sort();
  const chartBox = h('div', { class: 'chart', id: 'loss-chart' });
  if (evaluated.length > 0 || r['baseline']) {
    const xs = [0, ...evaluated.map((x) => Number(x.round))];
    const base = r['baseline'];
    const siteLoss = (/** @type {Json | null} */ x, /** @type {string} */ id) => x?.evals?.find((/** @type {Json} */ e) => e.siteId === id)?.loss ?? null;
    const data = [xs, [base ? base.loss : null, ...evaluated.map((x) => x.evalLoss)], ...siteIds.map((id) => [base ? (base.sites.find((/** @type {Json} */ e) => e.siteId === id)?.loss ?? null) : null, ...evaluated.map((x) => siteLoss(x, id))])];
    const series = [{ label: 'round' }, { label: 'global eval', stroke: '#000', width: 2.5 }, ...siteIds.map((id, i) => ({ label: id, stroke: PALETTE[i % PALETTE.length], width: 1.5, dash: [4, 3] }))];
    if (base) {
      data.push(xs.map(() => base.loss));
      series.push({ label: 'baseline: initial model', stroke: '#999', width: 1, dash: [1, 4] });
    }
    chartQueue.push(() => new UPlot({ width: Math.max(320, chartBox.clientWidth), height: 300, scales: { x: { time: false } }, axes: [{ label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }, { label: 'eval loss' }], series }, data, chartBox));
  } else {
    chartBox.append(h('p', null, 'No evaluation yet.'));
  }
  const longest = Math.max(1, ...rounds.map((x) => x.phases.reduce((/** @type {number} */ a, /** @type {Json} */ p) => a + (p.durationMs ?? 0), 0)));
  return h(
    'div',
    null,
    card('Loss per round', h('p', { class: 'note' }, 'Federated evaluation of each committed model: overall (sample-weighted) and per site; round 0 and the dotted line are the initial model, the baseline this run knows.'), chartBox),
    card('Phase timings', h('p', { class: 'note' }, 'The newest 50 attempts this coordinator process watched (timings are observed, not journaled: a restarted coordinator shows none for earlier rounds).'), timingLegend(), table(['round', 'phases', 'total'], rounds.slice(-50).reverse().map((x) => [`${x.round}.${x.attempt}`, phaseBar(x.phases, longest), duration(x.phases.reduce((/** @type {number} */ a, /** @type {Json} */ p) => a + (p.durationMs ?? 0), 0))]), 'timings')),
    card(
      'Rounds',
      r['truncated'] ? h('p', { class: 'note' }, 'The newest rounds; fedhpc admin rounds lists all.') : null,
      table(
        ['round', 'outcome', 'participants', 'dropped / reason', 'eval loss', 'up', 'down', 'took', 'model'],
        rounds.slice().reverse().map((x) => [
          `${x.round}.${x.attempt}`,
          h('span', { class: `state ${String(x.outcome)}` }, String(x.outcome)),
          (x.participants ?? []).join(', ') || '-',
          (x.dropped ?? []).join(', ') || String(x.reason ?? '') || '-',
          x.hasEval ? Number(x.evalLoss).toFixed(4) : '-',
          bytes(Number(x.bytesUp ?? NaN)),
          bytes(Number(x.bytesDown ?? NaN)),
          x.startedMs ? duration(Number(x.finishedMs) - Number(x.startedMs)) : '-',
          short(String(x.modelSha256 ?? '')),
        ]),
        'rounds-table',
      ),
    ),
  );
}

function timingLegend() {
  return h('div', { class: 'legend' }, PHASES.map((p) => h('span', { class: `swatch phase-${p}` }, p)));
}

/** @param {Json[]} phases @param {number} longest */
function phaseBar(phases, longest) {
  const el = h('div', { class: 'phases' });
  for (const p of phases) {
    const seg = h('span', { class: `phase phase-${String(p.phase)}`, title: `${p.phase}: ${p.durationMs === null ? 'open' : duration(p.durationMs)}` });
    seg.style.width = `${((p.durationMs ?? 0) / longest) * 100}%`;
    el.append(seg);
  }
  return el;
}

async function renderSites() {
  const s = await getJson('/api/sites');
  const now = Number(s['nowMs']);
  return card(
    'Sites',
    table(
      ['site', 'state', 'activity', 'agent', 'last heartbeat', 'busy', 'up', 'down', 'rounds', 'failures', 'certificate expires', 'usage'],
      s['sites'].map((/** @type {Json} */ x) => {
        const f = x.failures;
        const last = f.recent.at(-1);
        const notAfter = x.certificate?.notAfterMs;
        const days = notAfter ? (notAfter - now) / 86_400_000 : NaN;
        return [
          h('span', { class: 'site-id' }, String(x.id)),
          h('span', { class: `state ${String(x.state).replace(/\s/g, '-')}` }, String(x.state)),
          x.activity === undefined ? '-' : `${x.activity}${x.progress >= 0 ? ` ${Math.round(x.progress * 100)}%` : ''}`,
          x.agentVersion === undefined ? '-' : h('span', { class: 'agent' }, String(x.agentVersion)),
          x.lastHeartbeatMs ? `${duration(now - x.lastHeartbeatMs)} ago` : '-',
          x.busyFraction === null || x.busyFraction === undefined ? '-' : `${Math.round(x.busyFraction * 100)}%`,
          x.bytesUp === undefined ? '-' : bytes(x.bytesUp),
          x.bytesDown === undefined ? '-' : bytes(x.bytesDown),
          x.roundsContributed ?? '-',
          f.total === 0
            ? '0'
            : h('div', { class: 'failures' }, `${f.total}: `, h('code', null, String(last?.code || 'no code')), ' ', h('span', { class: 'failure-message' }, String(last?.message ?? '')), ` (round ${last?.round}.${last?.attempt})`),
          notAfter ? h('span', { class: days < 30 ? 'warn nowrap' : 'nowrap', title: time(notAfter) }, `${time(notAfter).slice(0, 10)} (${Math.floor(days)} d)`) : '-',
          usageCell(x.usage),
        ];
      }),
      'sites-table',
    ),
    h('p', { class: 'note' }, 'Busy: first to last training step of the last committed round the site took part in, over that round\'s wall time. Usage: the GPU-hours of this run each site signed into its receipts (allocated, and the share spent training); rounds a site could not measure are counted as unknown, never as zero.'),
  );
}

/**
 * A site's GPU-hours in this run: "12.3 GPU-h, 81% training", its unknown rounds with the reason,
 * and rounds whose receipt has not come; "not reported" before its first committed round.
 * @param {Json} u
 */
function usageCell(u) {
  if (u === null || u === undefined) return h('span', { class: 'absent' }, 'not reported');
  const parts = [];
  const known = u.rounds - u.roundsUnknown - u.roundsWithoutReceipt;
  if (known > 0) {
    const share = u.allocatedGpuHours > 0 ? `, ${Math.round((u.trainingGpuHours / u.allocatedGpuHours) * 100)}% training` : '';
    parts.push(h('span', { class: 'nowrap', title: String(u.sources.join(', ')) }, `${gpuHours(u.allocatedGpuHours)} GPU-h${share}`));
  }
  if (u.roundsUnknown > 0) parts.push(h('span', { class: 'warn', title: String(u.unknownReason ?? '') }, `${u.roundsUnknown} round${u.roundsUnknown === 1 ? '' : 's'} unknown`));
  if (u.roundsWithoutReceipt > 0) parts.push(h('span', { class: 'absent' }, `${u.roundsWithoutReceipt} awaiting receipt`));
  return h('div', { class: 'usage' }, ...parts.flatMap((p, i) => (i === 0 ? [p] : [' · ', p])));
}

/** @param {number} hours */
function gpuHours(hours) {
  return hours < 10 ? hours.toFixed(3) : hours.toFixed(1);
}

/** @param {Json} t */
function renderTransfers(t) {
  const list = /** @type {Json[]} */ (t['transfers']);
  return card(
    'Transfers in progress',
    list.length === 0
      ? h('p', { id: 'no-transfers' }, 'No transfer in progress.')
      : h(
          'div',
          { id: 'transfers' },
          list.map((x) =>
            h(
              'div',
              { class: 'transfer' },
              h('div', { class: 'transfer-head' }, h('strong', null, String(x.site)), ` ${x.direction === 'upload' ? 'uploads' : 'downloads'}`, x.rateBytesPerS ? `, ${bytes(x.rateBytesPerS)}/s` : '', x.etaS ? `, ${duration(x.etaS * 1000)} left` : ''),
              bar(x.totalBytes ? x.bytes / x.totalBytes : 0, `${bytes(x.bytes)} of ${bytes(x.totalBytes)}${x.receivedBytes !== null && x.source === 'heartbeat' ? ` (coordinator has ${bytes(x.receivedBytes)})` : ''}`, x.direction),
            ),
          ),
        ),
    h('p', { class: 'note' }, `Upload budget: ${bytes(t['uploadBudget'].usedBytes)} of ${bytes(t['uploadBudget'].totalBytes)} in flight.`),
  );
}

async function renderAudit() {
  const a = await getJson('/api/audit');
  const broken = a['firstBroken'];
  return h(
    'div',
    null,
    card(
      'Audit chain',
      field('chain', h('span', { class: `state ${a['ok'] ? 'committed' : 'failed'}` }, a['ok'] ? 'verified' : 'BROKEN'), 'audit-state'),
      field('head', h('code', null, String(a['head'])), 'audit-head'),
      field('verified up to', `record ${a['verifiedUpTo'].seq} of ${a['records']}`, 'audit-verified'),
      broken ? field('first break', `record ${broken.seq ?? broken.index + 1}: ${broken.reason}`) : null,
      field('receipts', `${a['receipts']} journaled, ${a['missingReceipts']} missing, certificates ${a['caChecked'] ? 'checked against the federation CA' : 'not checked'}`),
    ),
    card(
      'Receipts per round',
      table(
        ['round', 'receipts', 'missing', 'committed record'],
        a['rounds'].slice().reverse().map((/** @type {Json} */ x) => [
          `${x.round}.${x.attempt}`,
          `${x.receipts.length} of ${x.participants.length}`,
          x.missing.join(', ') || '-',
          h('code', null, short(String(x.hash))),
        ]),
        'receipts-table',
      ),
    ),
  );
}

/** Live updates: a change re-reads the page; transfers come with their data. */
function connect() {
  const events = new EventSource('/api/events');
  events.onopen = () => {
    live.textContent = 'live';
    live.className = 'live on';
    refresh();
  };
  events.onerror = () => {
    live.textContent = 'reconnecting';
    live.className = 'live off';
    // A stream refused for want of a session stays closed: the page asks for one.
    if (events.readyState === EventSource.CLOSED) void getJson('/api/overview').then(() => setTimeout(connect, 2000));
  };
  const kinds = ['site.joined', 'site.left', 'site.approved', 'site.revoked', 'run.started', 'round.opened', 'phase.changed', 'upload.done', 'site.dropped', 'round.committed', 'round.aborted', 'round.evaluated', 'run.finished', 'run.failed', 'shard.state'];
  for (const kind of kinds) events.addEventListener(kind, () => refresh());
  events.addEventListener('transfers', (e) => {
    if (page() !== '/transfers') return;
    view.replaceChildren(renderTransfers(JSON.parse(/** @type {MessageEvent<string>} */ (e).data)));
    renders += 1;
    document.body.dataset['renders'] = String(renders);
  });
}

document.addEventListener('click', (e) => {
  const a = e.target instanceof Element ? e.target.closest('nav a') : null;
  if (!a) return;
  e.preventDefault();
  history.pushState(null, '', a.getAttribute('href') ?? '/');
  refresh();
});
window.addEventListener('popstate', () => refresh());

refresh();
connect();
