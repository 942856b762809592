/**
 * The `fedhpc` command's usage text, one section per command, and the one rule for help: any
 * command given `--help` or `-h` prints its section and exits 0, before its options are parsed.
 */

/** Each command's usage lines (a command's subcommands are in its section). */
export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  simulate: `  fedhpc simulate     [--sites N] [--rounds R] [--strategy fedavg|diloco|fedadam] [--state-dir DIR]
               [--min-sites K] [--no-secure-aggregation] [--drop SITE@PHASE]... [--timeout S] [--json]
               [--containers]   (each part in its own Docker container; builtin runner only)
               [--runner builtin|standin|command|slurm] [--python PATH]   (command/slurm: the PyTorch trainer)
               [--site-speeds 1,2,3]   (stand-in trainers that sleep as GPUs compute, at these relative
                                        speeds, one per site; selects --runner standin)
               [--budget-s S]   (a time budget per round: each site trains S seconds, its speed decides
                                 its steps; builtin and standin runners)
               [--overlap]   (persistent stand-in trainers that train on through each sync; needs --budget-s.
                              --fragments P is refused: fragment-wise syncs are not built)
               [--coordinators 2 --nats-cluster 3 [--kill-leader-at PHASE2]]   (a standby pair over a
                              3-node NATS cluster on loopback, lease TTL 4 s; the leader SIGKILLed on first
                              entering PHASE2, the failover and the replicated journal's rounds reported)
               (PHASE: keys, shares, upload, unmask; PHASE2: training, upload, aggregate, commit, keys, shares, unmask)
               [--shards K]   (K aggregator shards, local processes or with --containers a container each:
                              sites upload their deltas to them in parts and download the global model's
                              parts from them; rounds aggregate on them, each unmasking and stepping its
                              1/K of the model into the new checkpoint; not with --coordinators)
`,
  coordinator: `  fedhpc coordinator  --config FILE
`,
  aggregator: `  fedhpc aggregator   --config FILE [--json]
               (an aggregator shard: attaches to the leader with its aggregator certificate and checks
                its part of the model against the checkpoint storage; written by provision --aggregators)
`,
  site: `  fedhpc site         --config FILE
  fedhpc site enroll  --site ID --federation NAME --out DIR [--json]   (key + CSR, made here; send the CSR)
  fedhpc site renew   --config FILE [--out CSR] [--json]               (CSR for a new certificate, same key)
`,
  provision: `  fedhpc provision    --federation NAME --sites a,b,c --admins NAME[,NAME] --out DIR
               [--coordinator HOST:PORT | --coordinators [NAME=]HOST:PORT,...]
               [--aggregators [NAME=]HOST:PORT,... | --local-shards K] [--force] [--json]
               (--coordinators: a leader and its standbys, a certificate each under coordinators/NAME/;
                --aggregators: aggregator shards, a certificate of the aggregator role each under aggregators/NAME/;
                --local-shards: K shards the coordinator starts on its own host (localShards), each serving
                sites on the coordinator's port + its number, a certificate each under coordinator/local-shards/)
`,
  export: `  fedhpc export       --state-dir DIR --round N --format hf --model-config FILE --tokenizer DIR --out DIR
               [--dtype f32|bf16] [--run ID] [--json]
               (the committed model of round N in Hugging Face layout, with a provenance card;
                the config and tokenizer must be those the run pinned)
  fedhpc export verify DIR --state-dir DIR [--json]   (the files against the card, the card against the journal)
`,
  admin: `  fedhpc admin        COMMAND --config ADMIN.json [--json], COMMAND one of:
               status | sites | rounds | round N | watch | logs SITE [--limit N]
               start --run FILE | pause | resume | abort [--reason TEXT]
               approve SITE --csr FILE --ca CA_DIR [--out DIR] [--language L] [--validity-days D]
               revoke SITE [--reason TEXT]
               usage [--site SITE] [--from DATE] [--to DATE] [--csv]
                 (GPU-hours each site signed into its receipts, per run and site: allocated,
                  training, waiting; DATE is ISO 8601, e.g. 2026-12-01 or 2026-12-01T10:00Z)
  fedhpc admin dashboard-token --config ADMIN.json [--valid-minutes N] [--url http(s)://HOST:PORT] [--json]
                                (a sign-in token for the coordinator's dashboard, signed with the admin's key)
  fedhpc admin audit  verify (--state-dir DIR | --nats URL [--stream NAME] [--subject SUBJECT] | --nats URL --journal FEDERATION) [--ca FILE] [--require-receipts] [--json]
  fedhpc admin audit  export (--state-dir DIR | --nats URL [--stream NAME] [--subject SUBJECT] | --nats URL --journal FEDERATION) [--out FILE] [--json]
  fedhpc admin audit  import --state-dir DIR --nats URL --journal FEDERATION [--replicas N] [--json]
                                (a state dir's journal into a standby pair's empty journal stream)
`,
};

/** The whole usage text: every command's section. */
export const USAGE = `usage: fedhpc <command> [options]   (every command answers --help)

${Object.values(COMMAND_USAGE).join('')}`;

/** The usage text of `command` (the whole text for one it does not know). */
export function usageOf(command: string): string {
  const section = COMMAND_USAGE[command];
  return section === undefined ? USAGE : `usage:\n${section}`;
}

/** Whether a command's arguments ask for help: `--help` or `-h` anywhere before a `--`. */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}
