/**
 * `fedhpc export --format hf …` and `fedhpc export verify DIR --state-dir D`: a committed model in
 * Hugging Face layout with its provenance card, and the check of such an export against the
 * journal. Reads the state dir only; no coordinator, no certificate.
 */
import { parseArgs } from 'node:util';
import { ExportError, exportHf, verifyHfExport, type ExportHfResult, type ExportVerifyReport } from '../coordinator/index.js';
import { printable } from '../common/text.js';
import { UsageError, isUsageError } from './usage-error.js';
import { COMMAND_USAGE } from './usage.js';

type Out = (s: string) => void;

/**
 * Runs `fedhpc export …` with the arguments after `export`. Exit codes: 0 done (verify: the export
 * checks out), 1 refused or a failed verification, 2 a usage mistake. With `--json`, a refusal is one
 * JSON line on stdout: `{"ok":false,"code":…,"message":…}`.
 */
export async function runExport(args: string[], out: Out = (s) => void process.stdout.write(`${s}\n`), err: Out = (s) => void process.stderr.write(`${s}\n`)): Promise<number> {
  const json = args.includes('--json');
  try {
    if (args[0] === 'verify') return await verify(args.slice(1), json, out);
    const { values, positionals } = parseArgs({
      args,
      options: {
        'state-dir': { type: 'string' },
        round: { type: 'string' },
        run: { type: 'string' },
        format: { type: 'string' },
        'model-config': { type: 'string' },
        tokenizer: { type: 'string' },
        out: { type: 'string' },
        dtype: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > 0) throw new UsageError(`export takes no positional arguments (but \`export verify DIR\`), got ${positionals.join(' ')}`);
    if (values.format !== 'hf') throw new UsageError(`--format must be hf (Hugging Face layout), got ${JSON.stringify(values.format)}`);
    const dtype = values.dtype;
    if (dtype !== undefined && dtype !== 'f32' && dtype !== 'bf16') throw new UsageError(`--dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
    const round = Number(need(values.round, 'round'));
    if (!Number.isSafeInteger(round) || round < 1) throw new UsageError(`--round must be an integer >= 1, got ${JSON.stringify(values.round)}`);
    const result = await exportHf({
      stateDir: need(values['state-dir'], 'state-dir'),
      round,
      runId: values.run,
      modelConfig: need(values['model-config'], 'model-config'),
      tokenizer: need(values.tokenizer, 'tokenizer'),
      out: need(values.out, 'out'),
      dtype,
    });
    out(json ? JSON.stringify({ ok: true, ...result }) : printable(humanResult(result), { keepNewlines: true }));
    return 0;
  } catch (e) {
    if (isUsageError(e)) {
      if (json) out(JSON.stringify({ ok: false, code: 'USAGE', message: (e as Error).message }));
      err(`${(e as Error).message}\nusage:\n${COMMAND_USAGE['export'] ?? ''}`);
      return 2;
    }
    // Anything else (a disk full, a file this user cannot read) is reported the same way, with its own code.
    const code = e instanceof ExportError ? e.code : String((e as { code?: unknown }).code ?? 'EXPORT_FAILED');
    const message = (e as Error).message ?? String(e);
    if (json) out(JSON.stringify({ ok: false, code, message, ...(e instanceof ExportError ? { context: e.context } : {}) }));
    else err(`fedhpc export: ${printable(code)}: ${printable(message, { keepNewlines: true })}`);
    return 1;
  }
}

function need(v: string | undefined, name: string): string {
  if (!v) throw new UsageError(`--${name} is required`);
  return v;
}

async function verify(args: string[], json: boolean, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError(`export verify takes one export folder, got ${positionals.length}`);
  const report = await verifyHfExport(positionals[0]!, need(values['state-dir'], 'state-dir'));
  out(json ? JSON.stringify(report) : printable(humanReport(positionals[0]!, report), { keepNewlines: true }));
  return report.ok ? 0 : 1;
}

function humanResult(r: ExportHfResult): string {
  const rows = [`exported round ${r.round} of run ${r.runId} (${r.dtype}) to ${r.out}`];
  for (const [f, sha] of Object.entries(r.files)) rows.push(`  ${sha}  ${f}`);
  return rows.join('\n');
}

function humanReport(dir: string, r: ExportVerifyReport): string {
  const what = `export ${dir}${r.runId ? ` (run ${r.runId}, round ${r.round})` : ''}`;
  if (r.ok) return `OK: ${what}: every file matches its card and the card the journal${r.weightsChecked ? '; the weights are the checkpoint\'s' : '; the checkpoint is gone (retention), weights not compared'}`;
  return [`FAILED: ${what}`, ...r.issues.map((i) => `  ${i}`)].join('\n');
}
