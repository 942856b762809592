/** The trainer contract's `progress.jsonl` as tests read it back. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One line of a round directory's `progress.jsonl` (trainer contract version 2). */
export interface ProgressLine {
  step: number;
  steps: number;
  loss: number;
  tokens: number;
  ts: number;
}

/** The progress lines a trainer wrote into `roundDir` (none when it wrote no file). */
export async function readProgressLines(roundDir: string): Promise<ProgressLine[]> {
  const path = join(roundDir, 'progress.jsonl');
  if (!existsSync(path)) return [];
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProgressLine);
}
