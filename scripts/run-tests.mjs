#!/usr/bin/env node
// Runs the whole test suite with Node's built-in runner (through tsx for TypeScript).
// First makes sure the system peers the interop tests need, and the brokers the bus tests start,
// and cluster tests start, and nginx are installed (see ensure-system-deps).
// Usage: node scripts/run-tests.mjs [--only DIR] [FILE...]
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ensureBrokers, ensureNginx, ensureSystemDeps } from './ensure-system-deps.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
let only
const explicit = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--only') only = args[++i]
  else explicit.push(args[i])
}

function findTests(dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...findTests(path))
    else if (name.endsWith('.test.ts')) out.push(relative(root, path))
  }
  return out
}

const files = explicit.length > 0 ? explicit : findTests(join(root, 'test', only ?? ''))
if (files.length === 0) {
  console.error('no test files found')
  process.exit(1)
}
const PEER_SUITES = ['interop', 'deflate', 'http2']
if (
  explicit.length === 0
    ? only === undefined || PEER_SUITES.includes(only)
    : explicit.some((file) => file.includes('test/http2/'))
)
  ensureSystemDeps()
const needsBrokers =
  explicit.length === 0
    ? only === undefined || only === 'bus' || only === 'cluster'
    : explicit.some((file) => file.includes('test/bus/') || file.includes('test/cluster/'))
if (needsBrokers) ensureBrokers()
// nginx for the suites that go through a real proxy, and Chromium for the browser's, however they
// are selected: the whole suite, --only, or files named one by one.
const selects = (suites) =>
  explicit.length === 0
    ? only === undefined || suites.includes(only)
    : explicit.some((file) => suites.some((suite) => file.includes(`test/${suite}/`)))
if (selects(['browser', 'transports', 'cluster', 'support'])) ensureNginx()
if ((explicit.length > 0 || only !== undefined) && selects(['browser'])) ensureSystemDeps()

// No test may hang the run: one that has not finished after 3 minutes fails, with its name (the
// whole suite takes about a minute; suites that need longer say so in their own options).
const TEST_TIMEOUT_MS = 180_000

const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    '--test-concurrency=2',
    `--test-timeout=${TEST_TIMEOUT_MS}`,
    // A file whose tests and hooks are all done ends there, whatever still holds its event loop:
    // twice in full CI runs the nginx-and-Chromium file finished its tests in 33 s and then sat
    // until the 3-minute bound (not reproduced alone; a browser slow to close under load keeps
    // playwright's pipes open). Leaks the suite cares about are asserted by tests of their own
    // (processes stopped, ports closed, sockets destroyed), not by the runner waiting.
    '--test-force-exit',
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, RALLY_TEST: '1' } },
)
process.exit(result.status ?? 1)
