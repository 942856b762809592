/** The demo federation's data and model seed, shared by the builtin and the PyTorch sites. */

/** Size of each site's generated corpus in the demo. */
export const DEMO_DATA = { trainChars: 200_000, heldoutChars: 20_000 } as const;
/** Seed of the demo's initial model. */
export const DEMO_MODEL_SEED = 42;
