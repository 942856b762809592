/**
 * The Python agent follows a standby's NOT_LEADER to the leader (issue 19: "the Python site
 * following the leader"), as docs/protocol.md "Standby coordinators and NOT_LEADER" says: given
 * only a standby's address, it dials the leader the standby names and its round commits. Beside it
 * a TypeScript agent whose site.json lists `coordinators: [standby, leader]` does the same. The
 * standby is coordinator/ha/standby-server.ts on another port, with the coordinator's certificate.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestStandby, type TestStandby } from '../helpers/ha-pair.js';
import { skipUnless } from '../helpers/components.js';
import { InteropFederation } from './harness.js';
import { pythonInteropUnavailable } from './python.js';

const skip = skipUnless('python-interop', pythonInteropUnavailable());
const PY = 'site-2';

describe.skipIf(skip)('the Python site agent and a standby coordinator', () => {
  let f: InteropFederation | undefined;
  let standby: TestStandby | undefined;
  afterEach(async () => {
    await standby?.stop();
    await f?.close();
    f = standby = undefined;
  });

  it('given only a standby\'s address, follows its NOT_LEADER to the leader, and its round commits', async () => {
    f = await InteropFederation.start(2, { rounds: 1, minSites: 2, evaluate: false, secureAggregation: { enabled: false }, strategy: { name: 'fedavg', lr: 1 }, maxSiteWeight: 1000 });
    const fed = f.fed;
    standby = await startTestStandby(fed, () => fed.address, 'warn');
    // Dialled by the name the coordinator's certificate holds (the standby shares it).
    const standbyAddress = standby.dial;
    await fed.patchSiteConfig('site-1', ({ coordinator: _one, ...c }) => ({ ...c, coordinators: [standbyAddress, fed.address] }));
    f.startTsAgent('site-1');
    const python = f.startPython(PY, [], [standbyAddress]);
    const committed = await f.completed(1, 40_000);
    expect([...committed[0]!.participants].sort()).toEqual(['site-1', PY]);
    const events = python.events();
    expect(events.find((e) => e.event === 'following-leader')).toMatchObject({ address: fed.address, named_by: standbyAddress, backoff: false });
    expect(events.filter((e) => e.event === 'joined').map((e) => e['address'])).toEqual([fed.address]);
  }, 60_000);
});
