#!/usr/bin/env node
// Runs the coverage-guided fuzzer (test/fuzz/engine.ts) through tsx, with the same arguments.
// Usage: npm run fuzz -- --target frames|http-head|extensions|close|all [--time SECONDS]
//          [--seed N] [--timeout MS] [--rss-limit-mb MB] [--artifacts DIR] [--corpus-out DIR]
//        npm run fuzz -- --target frames --input FILE      (replay one saved input)
//        npm run fuzz -- --target frames --merge DIR       (add the inputs of a --corpus-out DIR
//                                                          that reach new blocks to the seeds)
// See docs/fuzzing.md.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', 'test/fuzz/engine.ts', ...process.argv.slice(2)],
  { cwd: root, stdio: 'inherit' },
)
process.exit(result.status ?? 1)
