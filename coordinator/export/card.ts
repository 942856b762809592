/**
 * The model card (`README.md`) of an export: the provenance a reader follows from the model back to
 * the run, its rounds, the sites and the data manifests they reported, in prose and tables, and the
 * same facts as one JSON block that `fedhpc export verify` reads. The prose is rendered from the
 * block, so verification re-renders it and a card edited by hand no longer matches.
 */
import type { Provenance } from './provenance.js';

/** The card's machine-readable block: the provenance, the export's settings, every file's SHA-256. */
export interface CardData extends Provenance {
  readonly format: typeof CARD_FORMAT;
  /** The weights' dtype in the export (`F32`, `BF16`, `F16`), and the checkpoint's. */
  readonly dtype: string;
  readonly checkpointDtype: string;
  /** SHA-256 of every file of the export but this card, by file name. */
  readonly files: Readonly<Record<string, string>>;
}

/** The version of the card's block. */
export const CARD_FORMAT = 'fedhpc-hf-export/1';

const BLOCK_START = '<!-- fedhpc-provenance: the JSON below is what `fedhpc export verify` checks -->\n```json\n';
const BLOCK_END = '\n```\n';

/** Markdown text shown as data: table cells cannot break the table, nor the text inject markup. */
const cell = (s: unknown): string => String(s).replace(/[|\\`<>\n\r]/g, (c) => `&#${c.charCodeAt(0)};`);

/** The card's text for `d`. */
export function renderCard(d: CardData): string {
  const rows = (header: string[], body: unknown[][]): string => [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...body.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
  const participants = d.rounds.flatMap((r) => r.participants.map((p) => [r.round, p.site, p.dataManifestSha256, p.samples, p.tokens, p.weight]));
  const lines = [
    '---',
    'library_name: transformers',
    'tags: [fedhpc, federated-learning]',
    '---',
    '',
    `# ${cell(d.runId)}, round ${d.round}`,
    '',
    `A Llama model (LlamaForCausalLM) trained by federated learning with fedhpc: the checkpoint round ${d.round} of run \`${cell(d.runId)}\`` +
      `${d.federation ? ` (federation \`${cell(d.federation)}\`)` : ''} committed, exported in ${d.dtype} (the checkpoint is ${d.checkpointDtype}).`,
    '',
    '## Provenance',
    '',
    rows(['', ''], [
      ['run', d.runId],
      ['rounds committed up to this model / planned', `${d.rounds.length} / ${d.runRounds}`],
      ['checkpoint SHA-256 (the state dir\'s `models/<sha256>.safetensors`)', d.checkpointSha256],
      ['strategy', JSON.stringify(d.strategy)],
      ['weighting', d.weighting],
      ['aggregator', JSON.stringify(d.aggregator)],
      ['secure aggregation', JSON.stringify(d.secureAggregation)],
      ['pinned model config SHA-256', d.pins.modelConfigSha256 ?? 'not pinned'],
      ['pinned tokenizer SHA-256', d.pins.tokenizerSha256 ?? 'not pinned'],
      [`round ${d.round}'s \`round-committed\` record`, `seq ${d.committedRecord.seq}, hash ${d.committedRecord.hash}`],
      ['audit chain head at export', `seq ${d.auditChainHead.seq}, hash ${d.auditChainHead.hash}`],
    ]),
    '',
    '## Participants per round and the data manifests they reported',
    '',
    rows(['round', 'site', 'data manifest SHA-256', 'samples', 'tokens', 'weight'], participants),
    '',
    '## Files',
    '',
    rows(['file', 'SHA-256'], Object.entries(d.files).map(([f, h]) => [f, h])),
    '',
    'This card is not in the table: it holds the others\' hashes. `fedhpc export verify DIR --state-dir STATE` checks every file against it, the block below against the journal, and the weights against the checkpoint while the state dir keeps it.',
    '',
  ];
  return `${lines.join('\n')}\n${BLOCK_START}${JSON.stringify(d, null, 2)}${BLOCK_END}`;
}

/** The JSON block of a card's text; an expected outcome, so a result. */
export function parseCard(text: string): { ok: true; value: CardData } | { ok: false; issues: string[] } {
  const at = text.lastIndexOf(BLOCK_START);
  const end = text.lastIndexOf(BLOCK_END);
  if (at < 0 || end < at) return { ok: false, issues: ['README.md holds no fedhpc provenance block'] };
  try {
    const value = JSON.parse(text.slice(at + BLOCK_START.length, end)) as CardData;
    if (value.format !== CARD_FORMAT) return { ok: false, issues: [`the provenance block's format is ${JSON.stringify(value.format)}, expected ${CARD_FORMAT}`] };
    return { ok: true, value };
  } catch (e) {
    return { ok: false, issues: [`the provenance block is not JSON: ${(e as Error).message}`] };
  }
}
