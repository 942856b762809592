import { describe, expect, it } from 'vitest';
import { issueCertificate } from '../../../coordinator/pki/index.js';
import { checkCertificateDates } from '../../../site-agent/cert-reload.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { caFor, NOW } from '../pki/fixtures.js';

describe('the agent checks its own certificate before dialling', () => {
  it('accepts a valid certificate and refuses an expired or not-yet-valid one, saying which and what to do', async () => {
    const ca = await caFor('dates');
    const cert = Buffer.from((await issueCertificate({ ca, role: 'site', id: 'bsc', federation: 'dates', validityDays: 1, now: NOW })).certPem);
    expect(() => checkCertificateDates(cert, 'site.crt', NOW.getTime() + 3_600_000)).not.toThrow();
    for (const [now, says] of [
      [NOW.getTime() + 3 * 86_400_000, 'has expired'],
      [NOW.getTime() - 3 * 86_400_000, 'is not valid yet'],
    ] as const) {
      let err: unknown;
      try {
        checkCertificateDates(cert, 'site.crt', now);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SiteAgentError);
      expect((err as SiteAgentError).code).toBe('CERTIFICATE_INVALID');
      expect((err as SiteAgentError).retryable).toBe(false);
      expect((err as Error).message).toContain(`site.crt`);
      expect((err as Error).message).toContain(says);
      expect((err as Error).message).toContain('fedhpc site renew');
    }
  });
});
