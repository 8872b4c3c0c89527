/**
 * Every seed input of every fuzz target (test/fuzz/corpus/<target>/*) passes its target's
 * invariants, in this process: a quick check that fails on a broken invariant without a fuzzing
 * run, and where inputs the fuzzer found stay as regression tests.
 */
import { describe, it } from 'node:test'
import { loadTarget, readCorpus, TARGET_NAMES } from './engine.js'

describe('fuzz seed corpus', () => {
  for (const name of TARGET_NAMES) {
    it(`${name}: every seed input keeps the invariants`, async () => {
      const target = await loadTarget(name)
      for (const seed of readCorpus(name)) {
        try {
          await target.run(seed.data.subarray(0, target.maxLength))
        } catch (error) {
          throw new Error(`seed ${name}/${seed.file} breaks an invariant`, { cause: error })
        }
      }
    })
  }
})
