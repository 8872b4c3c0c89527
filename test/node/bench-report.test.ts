/**
 * The benchmark's scenario list and report, without running a benchmark: a full run (`npm run
 * bench`, no options) has every scenario with issue 17's targets, and docs/benchmarks.md written
 * from its results shows every figure next to its target with a verdict, the memory per connection
 * with context takeover at each window size, the transports, cluster and HTTP/2 tables, and says
 * when Bun could not run. Results are made up here (the report is a function of them); the
 * figures themselves come from `npm run bench`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fullRunMinutes, HELP, type Options, parseOptions } from '../../bench/cli-options.js'
import type { Sample } from '../../bench/measure.js'
import { probeBun } from '../../bench/processes.js'
import { machineInfo, markdown, targetsTable, terminalTable } from '../../bench/report.js'
import {
  estimateSeconds,
  SCENARIO_IDS,
  type Scenario,
  type ServerId,
  scenarios,
  subjectOf,
} from '../../bench/scenarios.js'
import { type ScenarioResult, summarize } from '../../bench/stats.js'

const FILES = {
  text: '/tmp/payload-1k.json',
  deflated: '/tmp/payload-1k.deflate',
  deflatedWithWindow: { 9: '/tmp/w9.deflate', 12: '/tmp/w12.deflate', 15: '/tmp/w15.deflate' },
}

function fullList(options: Options = parseOptions([])): Scenario[] {
  return scenarios(options, FILES, 65_000)
}

function byId(list: Scenario[], id: string): Scenario {
  const scenario = list.find((s) => s.id === id)
  assert.ok(scenario, `no scenario ${id}`)
  return scenario
}

function sample(rep: number, headline: number): Sample {
  return {
    rep,
    headline,
    perCpu: headline,
    perSecond: headline,
    p50: 100,
    p99: 200,
    serverCpuUtil: 1,
    loadgenCpuUtil: 0.5,
    serverRssKiB: 50_000,
    warnings: [],
  }
}

/**
 * Results where every peer's figure is the subject's divided by `ratioOf`
 * (so that subject/peer is exactly that), the baseline of deflate-memory 1,000 B below the rest.
 */
function madeUp(list: Scenario[], ratioOf: (scenario: Scenario, id: ServerId) => number): ScenarioResult[] {
  return list.map((scenario) => {
    const samples: Record<string, Sample[]> = {}
    for (const id of scenario.servers) {
      const value =
        scenario.baseline !== undefined
          ? id === scenario.baseline
            ? 2000
            : 3000
          : id === subjectOf(scenario)
            ? 1000
            : 1000 / ratioOf(scenario, id)
      // One repetition: the report then shows each figure alone, without [min–max].
      samples[id] = [sample(0, value)]
    }
    return { scenario, samples, summary: summarize(scenario, samples) }
  })
}

describe('bench: a full run', () => {
  it('runs every scenario, in the order of SCENARIO_IDS; a quick one every one but idle-max', () => {
    assert.deepEqual(
      fullList().map((s) => s.id),
      SCENARIO_IDS,
    )
    assert.deepEqual(
      fullList(parseOptions(['--quick'])).map((s) => s.id),
      SCENARIO_IDS.filter((id) => id !== 'idle-max'),
    )
  })

  it("carries issue 17's targets", () => {
    const list = fullList()
    assert.equal(byId(list, 'echo-32').targets?.vsBun, 0.7)
    assert.equal(byId(list, 'broadcast-10k').targets?.vsBun, 1)
    assert.deepEqual(
      [byId(list, 'handshake').targets?.vsRaw, byId(list, 'handshake').targets?.vsBun],
      [1, 0.6],
    )
    assert.equal(byId(list, 'deflate-1k').targets?.vsBun, 0.6)
    assert.equal(byId(list, 'deflate-1k-takeover').targets?.vsBun, 0.6)
    assert.equal(byId(list, 'idle-10k').targets?.vsRaw, 1.05)
    assert.equal(byId(list, 'idle-max').targets?.vsRaw, 1.05)
    assert.equal(byId(list, 'idle-max').connections, 19_900)
    // Every figure of issue 17 next to Bun, where Bun runs.
    for (const id of ['echo-32', 'broadcast-10k', 'handshake', 'deflate-1k', 'deflate-1k-takeover'])
      assert.ok(byId(list, id).servers.includes('bun'), id)
  })

  it('says in each deflate title whether the servers keep context, and asks for it where they must', () => {
    const list = fullList()
    assert.match(byId(list, 'deflate-1k').title, /without context takeover/)
    assert.match(
      byId(list, 'deflate-1k-defaults').title,
      /Rally, Bun: no context takeover; ws: context takeover/,
    )
    const takeover = byId(list, 'deflate-1k-takeover')
    assert.match(takeover.title, /with context takeover both ways/)
    assert.deepEqual(takeover.serverArgs, ['--deflate', 'takeover'])
    // deflate-memory: each window size is offered both ways, with a message compressed to fit it.
    const memory = byId(list, 'deflate-memory')
    assert.equal(memory.kind, 'memory')
    assert.equal(memory.baseline, 'rally')
    assert.ok(memory.loadgen.includes('--once'))
    for (const bits of [9, 12, 15]) {
      const args = memory.loadgenFor?.[`rally-takeover-${bits}` as ServerId] ?? []
      assert.ok(
        args.includes(`permessage-deflate; server_max_window_bits=${bits}; client_max_window_bits=${bits}`),
      )
      assert.ok(args.includes(FILES.deflatedWithWindow[bits as 9 | 12 | 15]))
    }
    assert.ok(memory.loadgenFor?.rally?.includes(FILES.text))
    // --servers names peers; deflate-memory has none, and keeps every window size.
    const picked = fullList(parseOptions(['--only', 'deflate-memory,echo-32', '--servers', 'bun']))
    assert.deepEqual(byId(picked, 'deflate-memory').servers, memory.servers)
    assert.deepEqual(byId(picked, 'echo-32').servers, ['rally', 'bun'])
  })

  it('states its length in the help text, from the same estimate, within 35 minutes', () => {
    const minutes = fullRunMinutes()
    assert.ok(minutes > 5 && minutes <= 35, `${minutes} minutes`)
    assert.match(HELP, new RegExp(`A full run takes about ${minutes} minutes`))
    const options = parseOptions([])
    // A quick run and a single scenario cost less than all of it.
    const all = estimateSeconds(fullList(options), options)
    const quick = parseOptions(['--quick'])
    assert.ok(estimateSeconds(fullList(quick), quick) < all / 3)
    assert.ok(estimateSeconds([byId(fullList(options), 'echo-32')], options) < all / 10)
  })
})

describe('bench: the report', () => {
  const options = parseOptions([])
  const list = fullList(options)
  // Rally at 0.8× every peer: ✅ where a target is at most 0.8×, ❌ where it is more.
  const results = madeUp(list, () => 0.8)

  it('shows every target with its verdict in the summary', () => {
    const rows = targetsTable(results)
    const row = (id: string): string => {
      const title = byId(list, id).title
      const found = rows.find((r) => r.startsWith(`| ${title} |`))
      assert.ok(found, `no row for ${id}`)
      return found
    }
    // Columns: ws + bufferutil, target, raw node:net, target, Bun, target.
    const cells = (id: string): string[] => row(id).split(' | ').slice(2)
    assert.deepEqual(cells('echo-32').slice(-2), ['0.80× ✅', '≥ 0.7× |'])
    assert.deepEqual(cells('handshake').slice(2), ['0.80× ❌', '≥ 1×', '0.80× ✅', '≥ 0.6× |'])
    assert.deepEqual(cells('broadcast-10k').slice(-2), ['0.80× ❌', '≥ 1× |'])
    assert.deepEqual(cells('deflate-1k-takeover').slice(-2), ['0.80× ✅', '≥ 0.6× |'])
    // Memory: lower is better; Rally at 0.8× raw meets ≤ 1.05×.
    assert.deepEqual(cells('idle-max').slice(2, 4), ['0.80× ✅', '≤ 1.05×'])
    assert.deepEqual(cells('idle-10k').slice(2, 4), ['0.80× ✅', '≤ 1.05×'])
    // deflate-memory has no peer and no target: its own table, not a row of "—".
    assert.ok(!rows.some((r) => r.includes(byId(list, 'deflate-memory').title)))
  })

  it('writes one document with every section, and nothing left "not measured"', () => {
    const machine = machineInfo(options, 65_536, '1.4.5')
    const doc = markdown(results, machine, options, new Date('2026-12-05T09:00:00Z'), 1800)
    assert.doesNotMatch(doc, /Not measured/)
    assert.doesNotMatch(doc, /Not in this run/)
    assert.doesNotMatch(doc, /Bun could not run/)
    assert.match(doc, /Generated by `npm run bench` .* in 30 minutes\./)
    for (const scenario of list) assert.ok(doc.includes(`### ${scenario.title}`), scenario.id)
    // Issue 17's memory with context takeover: each window, and 1,000 B above the baseline.
    assert.match(doc, /## Memory per connection with context takeover \(issue 17\)/)
    for (const window of ['9 (512 B)', '12 (4 KiB)', '15 (32 KiB)'])
      assert.ok(doc.includes(`| ${window} | 3000 B | 1000 B |`), window)
    assert.match(doc, /\| no permessage-deflate \(Rally\) \| 2000 B \| — \|/)
    // Issues 12, 13, 14 and 16 in the same document, with verdicts.
    assert.match(doc, /## The real-time layer against the targets of issue 12/)
    assert.match(doc, /\| #13 \| .*SSE.* \| 0\.80× ✅ \| ≥ 0\.5× \|/)
    assert.match(doc, /\| #14 \| .* \| 0\.80× ❌ \| ≥ 3× \|/)
    assert.match(doc, /\| #16 \| /)
  })

  it('names the scenarios a partial report leaves out', () => {
    const some = results.filter((r) => r.scenario.id === 'echo-32' || r.scenario.id === 'handshake')
    const doc = markdown(some, machineInfo(options, 1024, '1.4.5'), options, new Date(), 60)
    assert.match(doc, /Not in this run: `echo-16k`, `rtt-32`/)
    assert.match(doc, /`http2-echo`\. A full run/)
  })

  it('reports deflate-memory above its baseline, not as ratios', () => {
    const memory = results.find((r) => r.scenario.id === 'deflate-memory')!
    const table = terminalTable([memory])
    assert.match(table, /bytes\/conn +above no permessage-deflate/)
    assert.match(table, /Rally, context takeover, 15-bit windows +3000 B +1000 B/)
    assert.equal(memory.summary.find((s) => s.id === 'rally-takeover-9')?.ratio, undefined)
  })
})

describe('bench: without Bun', () => {
  it('finds out that Bun cannot run, and the report says so', () => {
    const probe = probeBun('/nonexistent/bun')
    assert.ok('reason' in probe)
    assert.match(probe.reason, /ENOENT/)
    const options = parseOptions([])
    const list = fullList(options).map((s) => ({ ...s, servers: s.servers.filter((id) => id !== 'bun') }))
    const doc = markdown(
      madeUp(list, () => 0.8),
      machineInfo(options, 65_536, `not available (${probe.reason})`),
      options,
      new Date(),
      1500,
    )
    assert.match(
      doc,
      /\*\*Bun could not run on this machine\*\* \(.*ENOENT.*\): the benchmark ran without it/,
    )
    assert.match(doc, /- Node\.js .*; Bun not available \(/)
    // Its column is empty, the targets still stated.
    const handshake = doc.split('\n').find((line) => line.startsWith(`| ${byId(list, 'handshake').title} |`))
    assert.ok(handshake?.endsWith('| — | ≥ 0.6× |'), handshake)
  })

  it('finds the version of a Bun that runs', {
    skip: 'version' in probeBun() ? false : 'no Bun here',
  }, () => {
    const probe = probeBun()
    assert.ok('version' in probe)
    assert.match(probe.version, /^\d+\.\d+\.\d+/)
  })
})
