import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { checkPins } from '../../../site-agent/runners/round-dir.js';
import type { TrainRequest } from '../../../site-agent/runners/runner.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function request(train: Record<string, unknown>): TrainRequest {
  return {
    runId: 'r',
    round: 1,
    attempt: 0,
    globalPath: '/nonexistent',
    globalSha256: '0'.repeat(64),
    roundDir: '/nonexistent',
    train,
    signal: new AbortController().signal,
    onProgress: () => undefined,
  };
}

describe('pinned model config and tokenizer', () => {
  let dir: string;
  let modelConfig: string;
  let tokenizer: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-pins-'));
    modelConfig = join(dir, 'config.json');
    tokenizer = join(dir, 'tokenizer.json');
    await writeFile(modelConfig, '{"hidden_size":64}');
    await writeFile(tokenizer, '{"vocab":{}}');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('lets a site whose files match the pins train', async () => {
    await expect(checkPins(request({ pins: { modelConfigSha256: sha('{"hidden_size":64}'), tokenizerSha256: sha('{"vocab":{}}') } }), { modelConfig, tokenizer })).resolves.toBeUndefined();
  });

  it('refuses, permanently and before training, a site whose model config differs from the pin', async () => {
    const err = (await checkPins(request({ pins: { modelConfigSha256: sha('{"hidden_size":128}') } }), { modelConfig, tokenizer }).catch((e: unknown) => e)) as SiteAgentError;
    expect(err).toBeInstanceOf(SiteAgentError);
    expect(err.code).toBe('SPEC_INVALID');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`model config ${modelConfig} has SHA-256 ${sha('{"hidden_size":64}')}`);
  });

  it('refuses a site whose tokenizer differs, or that has none, when the run pins one', async () => {
    const pinned = { pins: { tokenizerSha256: sha('another tokenizer') } };
    await expect(checkPins(request(pinned), { modelConfig, tokenizer })).rejects.toThrow(/tokenizer .* has SHA-256/);
    await expect(checkPins(request(pinned), { modelConfig, tokenizer: undefined })).rejects.toThrow(/names no tokenizer file/);
  });

  it('refuses a malformed pin instead of ignoring it', async () => {
    await expect(checkPins(request({ pins: { modelConfigSha256: 'not-a-hash' } }), { modelConfig, tokenizer })).rejects.toThrow(/run.train.pins is invalid: modelConfigSha256/);
  });
});
