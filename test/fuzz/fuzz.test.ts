/**
 * Coverage-guided fuzzing in CI: each target (test/fuzz/targets) runs for a bounded time in its
 * own process, from its seed corpus (test/fuzz/corpus/<target>). A target that throws, hangs or
 * grows memory past the limit fails the test, and the failing input is in the message (hex and
 * base64, and the command that replays it). Longer runs: `npm run fuzz -- --target X --time 600`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { TARGET_NAMES } from './engine.js'
import { runEngine } from './run-engine.js'

/**
 * Each run's whole time, its seed corpus's replay included: 4 targets x 18 s plus start-up, about
 * 80 s of the suite's time on 2 cores, however the corpus grows.
 */
const SECONDS_PER_TARGET = 18

describe('fuzzing each target for a bounded time', () => {
  const artifacts = mkdtempSync(join(tmpdir(), 'rally-fuzz-ci-'))
  for (const name of TARGET_NAMES) {
    it(`${name}: ${SECONDS_PER_TARGET} s find no input that breaks an invariant`, async () => {
      const run = await runEngine([
        '--target',
        name,
        '--time',
        String(SECONDS_PER_TARGET),
        '--artifacts',
        artifacts,
      ])
      assert.equal(run.code, 0, `the fuzzer failed:\n${run.output}`)
      const stats = /fuzz-stats (\{.*\})/.exec(run.output)
      assert.ok(stats !== null, `no statistics in the output:\n${run.output}`)
      const figures = JSON.parse(stats[1]!) as { runs: number; features: number }
      // Proof that the run did fuzz: inputs ran and coverage was measured.
      assert.ok(figures.runs > 0 && figures.features > 0, run.output)
    })
  }
})
