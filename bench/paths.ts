/** Where the benchmark reads and writes: everything is relative to the repository root. */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const BENCH = join(ROOT, 'bench')
export const LOADGEN_SOURCE = join(BENCH, 'loadgen', 'loadgen.c')
export const LOADGEN_BINARY = join(BENCH, 'loadgen', 'build', 'loadgen')
export const RESULTS = join(BENCH, 'results')
export const DOCS = join(ROOT, 'docs')
export const NOTES = join(BENCH, 'profile-notes.md')
/** The `bun` dev dependency's launcher (the native binary it installed for this platform). */
export const BUN_BINARY = join(ROOT, 'node_modules', '.bin', 'bun')
