/**
 * The fuzzing engine itself: a planted fault and a planted hang are found, reported with the input
 * that causes them, and make the run fail; a saved input replays.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runEngine } from './run-engine.js'

const PLANTED = fileURLToPath(new URL('./fixtures/planted.ts', import.meta.url))

describe('fuzzing engine', () => {
  it('reports a target that throws, with the input, saved for replay, and exits 1', async () => {
    const artifacts = mkdtempSync(join(tmpdir(), 'rally-fuzz-engine-'))
    const run = await runEngine(
      ['--target', PLANTED, '--time', '60', '--seed', '1', '--artifacts', artifacts],
      { FUZZ_PLANT: 'crash' },
    )
    assert.equal(run.code, 1, run.output)
    assert.match(run.output, /FUZZ FAILURE \(planted\): Error: planted fault reached/)
    const hex = /input \(\d+ bytes, hex\): ([0-9a-f]*)/.exec(run.output)?.[1]
    const file = /saved to (\S+);/.exec(run.output)?.[1]
    assert.ok(hex !== undefined && file !== undefined, run.output)
    assert.ok(hex.startsWith('46'), `the printed input is not the failing one: ${hex}`)
    assert.equal(readFileSync(file).toString('hex'), hex)

    const replayed = await runEngine(['--target', PLANTED, '--input', file], { FUZZ_PLANT: 'crash' })
    assert.equal(replayed.code, 1, replayed.output)
    assert.match(replayed.output, /planted fault reached/)
  })

  it('ends a run whose target hangs, printing the input that hung', async () => {
    const artifacts = mkdtempSync(join(tmpdir(), 'rally-fuzz-engine-'))
    const run = await runEngine(
      ['--target', PLANTED, '--time', '60', '--seed', '1', '--timeout', '2000', '--artifacts', artifacts],
      { FUZZ_PLANT: 'hang' },
    )
    assert.equal(run.signal, 'SIGKILL', run.output)
    assert.match(run.output, /no answer after 2000 ms \(a hang\)/)
    assert.match(run.output, /input \(\d+ bytes, hex\): 48/)
  })
})
