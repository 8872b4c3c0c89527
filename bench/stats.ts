/**
 * Statistics over repetitions: median [min–max] of each figure, and Rally/peer ratios taken pair by
 * pair within a repetition (servers are interleaved, so a pair shares the machine's state).
 */
import type { Sample } from './measure.js'
import { type Scenario, SERVERS, type ServerId, subjectOf } from './scenarios.js'

export interface Spread {
  median: number
  min: number
  max: number
  n: number
}

export function spread(values: number[]): Spread {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  const mid = finite.length >> 1
  const median = finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2
  return { median, min: finite[0]!, max: finite[finite.length - 1]!, n: finite.length }
}

export interface ServerSummary {
  id: ServerId
  label: string
  headline: Spread
  perCpu: Spread
  perSecond: Spread
  p50: Spread
  p99: Spread
  serverCpuUtil: Spread
  loadgenCpuUtil: Spread
  /**
   * Subject/this on the headline figure, pair by pair (undefined for the subject itself): the
   * subject is Rally, or Rally's real-time layer in its own scenarios.
   */
  ratio?: Spread
  /** Rally/this on raw throughput (throughput scenarios). */
  ratioPerSecond?: Spread
  /**
   * Peak server RSS in the measured window, KiB, and Rally/this on it (throughput and latency
   * scenarios). Optional: results saved before it was measured have neither.
   */
  rss?: Spread
  ratioRss?: Spread
  /**
   * Scenarios with a baseline (deflate-memory): this server's headline minus the baseline's, pair
   * by pair (undefined for the baseline itself). Such scenarios have no ratios.
   */
  aboveBaseline?: Spread
}

export interface ScenarioResult {
  scenario: Scenario
  samples: Record<string, Sample[]>
  summary: ServerSummary[]
}

export function pairRatios(
  scenario: Scenario,
  samples: Record<string, Sample[]>,
  peer: ServerId,
  key: 'headline' | 'perSecond' | 'serverRssKiB',
): Spread {
  const subject = samples[subjectOf(scenario)] ?? []
  const other = samples[peer] ?? []
  const ratios: number[] = []
  for (const a of subject) {
    const b = other.find((sample) => sample.rep === a.rep)
    // A missing figure is NaN, which spread() leaves out.
    if (b !== undefined) ratios.push((a[key] ?? Number.NaN) / (b[key] ?? Number.NaN))
  }
  return spread(ratios)
}

/** this − baseline on the headline figure, repetition by repetition. */
export function pairDifferences(samples: Record<string, Sample[]>, id: ServerId, baseline: ServerId): Spread {
  const differences: number[] = []
  for (const a of samples[id] ?? []) {
    const b = (samples[baseline] ?? []).find((sample) => sample.rep === a.rep)
    if (b !== undefined) differences.push(a.headline - b.headline)
  }
  return spread(differences)
}

export function summarize(scenario: Scenario, samples: Record<string, Sample[]>): ServerSummary[] {
  return scenario.servers.map((id) => {
    const list = samples[id] ?? []
    const summary: ServerSummary = {
      id,
      label: SERVERS[id].label,
      headline: spread(list.map((s) => s.headline)),
      perCpu: spread(list.map((s) => s.perCpu)),
      perSecond: spread(list.map((s) => s.perSecond)),
      p50: spread(list.map((s) => s.p50)),
      p99: spread(list.map((s) => s.p99)),
      serverCpuUtil: spread(list.map((s) => s.serverCpuUtil)),
      loadgenCpuUtil: spread(list.map((s) => s.loadgenCpuUtil)),
    }
    if (scenario.kind !== 'memory' && scenario.kind !== 'recovery')
      summary.rss = spread(list.map((s) => s.serverRssKiB ?? Number.NaN))
    if (scenario.baseline !== undefined) {
      if (id !== scenario.baseline) summary.aboveBaseline = pairDifferences(samples, id, scenario.baseline)
    } else if (id !== subjectOf(scenario) && samples[subjectOf(scenario)] !== undefined) {
      summary.ratio = pairRatios(scenario, samples, id, 'headline')
      if (scenario.kind !== 'memory') {
        summary.ratioPerSecond = pairRatios(scenario, samples, id, 'perSecond')
        summary.ratioRss = pairRatios(scenario, samples, id, 'serverRssKiB')
      }
    }
    return summary
  })
}
