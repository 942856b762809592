import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NODE_HEAP_OPTIONS } from '../../../common/gc-tuning.js';

// The images start Node themselves (their entry points, the Apptainer run and start scripts), so
// each spells fedhpc's Node options out; `fedhpc` on their PATH is bin/fedhpc, which does too.
describe("the deploy files start Node with fedhpc's Node options", () => {
  it('the Docker entrypoint, with `fedhpc` on PATH through bin/fedhpc', () => {
    const dockerfile = readFileSync('deploy/docker/Dockerfile', 'utf8');
    expect(dockerfile).toContain(`ENTRYPOINT ${JSON.stringify(['node', ...NODE_HEAP_OPTIONS, '/app/dist/cli/main.js']).replaceAll(',', ', ')}`);
    expect(dockerfile).toContain('COPY --from=build /src/bin ./bin');
    expect(dockerfile).toMatch(/ln -s \/app\/bin\/fedhpc \/usr\/local\/bin\/fedhpc/);
  });

  it('the Apptainer run and start scripts, with `fedhpc` on PATH through bin/fedhpc', () => {
    const def = readFileSync('deploy/apptainer/fedhpc-agent.def', 'utf8');
    const node = def.split('\n').filter((l) => /^\s*exec node /.test(l));
    expect(node).toHaveLength(2);
    for (const line of node) expect(line).toContain(`exec node ${NODE_HEAP_OPTIONS.join(' ')} /opt/fedhpc/dist/cli/main.js`);
    expect(def).toMatch(/mv package\.json node_modules dist bin \/opt\/fedhpc\//);
    expect(def).toContain('ln -s /opt/fedhpc/bin/fedhpc /usr/local/bin/fedhpc');
  });
});
