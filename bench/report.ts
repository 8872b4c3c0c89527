/**
 * The report: the terminal table, the targets table, docs/benchmarks.md and its chart
 * (docs/benchmarks.svg), and what they say about the machine.
 */
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import type { Options } from './cli-options.js'
import { NOTES, ROOT } from './paths.js'
import {
  type Kind,
  OFFER_BROWSER,
  OFFER_FAIR,
  SCENARIO_IDS,
  type Scenario,
  SERVERS,
  subjectOf,
} from './scenarios.js'
import { type ScenarioResult, type ServerSummary, type Spread, spread } from './stats.js'

export function si(value: number): string {
  if (!Number.isFinite(value)) return '–'
  const abs = Math.abs(value)
  if (abs >= 1e9) return `${(value / 1e9).toFixed(2)}G`
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`
  if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`
  if (abs >= 1e3) return `${(value / 1e3).toFixed(2)}k`
  if (abs >= 100) return value.toFixed(0)
  return value.toFixed(1)
}

export function micros(value: number): string {
  if (!Number.isFinite(value)) return '–'
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} ms`
  if (value >= 1000) return `${(value / 1000).toFixed(2)} ms`
  return `${value.toFixed(value >= 100 ? 0 : 1)} µs`
}

export function bytes(value: number): string {
  if (!Number.isFinite(value)) return '–'
  if (value >= 10 * 1024) return `${(value / 1024).toFixed(1)} KiB`
  return `${value.toFixed(0)} B`
}

export function mebibytes(kib: number): string {
  return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : '–'
}

export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
}

export function spreadText(s: Spread, format: (v: number) => string): string {
  if (s.n === 0) return '–'
  if (s.n === 1) return format(s.median)
  return `${format(s.median)} [${format(s.min)}–${format(s.max)}]`
}

export function headlineFormat(kind: Kind): (v: number) => string {
  return kind === 'latency' || kind === 'recovery' ? micros : kind === 'memory' ? bytes : si
}

export function headlineName(scenario: Scenario): string {
  // Issues 13 and 16 time one way (publication to delivery) or up to a first message.
  if (scenario.kind === 'latency') return scenario.issue === undefined ? 'p50 round trip' : 'p50 latency'
  if (scenario.kind === 'memory') return 'bytes per connection'
  if (scenario.kind === 'recovery') return 'round trip of the recovering subscribe'
  return `${scenario.units} per server CPU-s`
}

export function lowerIsBetter(kind: Kind): boolean {
  return kind !== 'throughput'
}

/**
 * Whether a ratio meets its target (≥ for higher-is-better figures, ≤ otherwise). By direction
 * rather than by kind: server RSS is lower-is-better in a throughput scenario.
 */
export function meets(lower: boolean, value: number, target: number): boolean {
  return lower ? value <= target : value >= target
}

export function targetText(lower: boolean, target: number | undefined): string {
  if (target === undefined) return '—'
  return `${lower ? '≤' : '≥'} ${target}×`
}

export function pad(text: string, width: number, right = false): string {
  const length = [...text].length
  if (length >= width) return text
  return right ? ' '.repeat(width - length) + text : text + ' '.repeat(width - length)
}

export function terminalTable(results: ScenarioResult[]): string {
  const lines: string[] = []
  for (const { scenario, summary } of results) {
    lines.push('')
    lines.push(
      `${scenario.title}  (${headlineName(scenario)}${lowerIsBetter(scenario.kind) ? ', lower is better' : ''})`,
    )
    const format = headlineFormat(scenario.kind)
    if (scenario.kind === 'recovery') {
      lines.push(`  ${recoveryLine(results.find((r) => r.scenario === scenario)!)}`)
      continue
    }
    const header =
      scenario.kind === 'memory'
        ? ['server', 'bytes/conn', comparisonHeader(scenario)]
        : [
            'server',
            headlineName(scenario),
            `${scenario.unit}/s`,
            'p50',
            'p99',
            'srv CPU',
            'lg CPU',
            'srv RSS',
            'Rally/this',
            'Rally/this raw',
            'Rally/this RSS',
          ]
    const rows = summary.map((s) => {
      if (scenario.kind === 'memory') return [s.label, spreadText(s.headline, format), comparisonText(s)]
      return [
        s.label,
        spreadText(s.headline, format),
        si(s.perSecond.median),
        micros(s.p50.median),
        micros(s.p99.median),
        `${(s.serverCpuUtil.median * 100).toFixed(0)}%`,
        `${(s.loadgenCpuUtil.median * 100).toFixed(0)}%`,
        s.rss ? mebibytes(s.rss.median) : '–',
        s.ratio ? spreadText(s.ratio, ratio) : '',
        s.ratioPerSecond ? ratio(s.ratioPerSecond.median) : '',
        s.ratioRss ? ratio(s.ratioRss.median) : '',
      ]
    })
    const widths = header.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...r[i]!].length)))
    lines.push(`  ${header.map((h, i) => pad(h, widths[i]!)).join('  ')}`)
    for (const row of rows) lines.push(`  ${row.map((c, i) => pad(c, widths[i]!, i > 0)).join('  ')}`)
  }
  return lines.join('\n')
}

/** A memory table's last column: Rally/this, or what the figure is above (deflate-memory). */
function comparisonHeader(scenario: Scenario): string {
  if (scenario.baseline === undefined) return 'Rally/this'
  return `above ${scenario.baselineName ?? SERVERS[scenario.baseline].label}`
}

/** A memory row's last column: subject/this, or this above the baseline (deflate-memory). */
function comparisonText(s: ServerSummary): string {
  if (s.aboveBaseline !== undefined) return spreadText(s.aboveBaseline, bytes)
  return s.ratio ? spreadText(s.ratio, ratio) : ''
}

/** The peer a target "vs ws" is checked against: ws with bufferutil where it ran. */
export function wsPeer(summary: ServerSummary[]): ServerSummary | undefined {
  return summary.find((s) => s.id === 'ws-native') ?? summary.find((s) => s.id === 'ws')
}

export function targetsTable(results: ScenarioResult[]): string[] {
  const rows: string[] = [
    '| scenario | figure | Rally vs ws + bufferutil | target | Rally vs raw `net` | target | Rally vs Bun | target |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const { scenario, summary } of results) {
    // The real-time layer's scenarios compare it with other peers: realtimeTable; deflate-memory
    // has no peer: takeoverMemoryTable.
    if (scenario.subject !== undefined || scenario.baseline !== undefined) continue
    const ws = wsPeer(summary)
    const raw = summary.find((s) => s.id === 'raw')
    const bun = summary.find((s) => s.id === 'bun')
    const lower = lowerIsBetter(scenario.kind)
    const cell = (value: Spread | undefined, target: number | undefined, lowerWins: boolean): string => {
      if (value === undefined || value.n === 0) return '—'
      const mark = target === undefined ? '' : meets(lowerWins, value.median, target) ? ' ✅' : ' ❌'
      return `${spreadText(value, ratio)}${mark}`
    }
    rows.push(
      `| ${scenario.title} | ${headlineName(scenario)} | ${cell(ws?.ratio, scenario.targets?.vsWs, lower)} | ${targetText(lower, scenario.targets?.vsWs)} | ${cell(raw?.ratio, scenario.targets?.vsRaw, lower)} | ${targetText(lower, scenario.targets?.vsRaw)} | ${cell(bun?.ratio, scenario.targets?.vsBun, lower)} | ${targetText(lower, scenario.targets?.vsBun)} |`,
    )
    // A memory target on a throughput scenario gets a row of its own, right under the scenario's,
    // so that the figure column names what is compared. Checked against ws only, like the issue.
    if (scenario.targets?.rssVsWs !== undefined) {
      rows.push(
        `| ${scenario.title} | server RSS, peak in the measured window | ${cell(ws?.ratioRss, scenario.targets.rssVsWs, true)} | ${targetText(true, scenario.targets.rssVsWs)} | — | — | — | — |`,
      )
    }
  }
  return rows
}

/**
 * deflate-memory (issue 17): bytes per connection with context takeover at each window size, and
 * what that adds to a connection that exchanged the same message without permessage-deflate.
 */
export function takeoverMemoryTable(results: ScenarioResult[]): string[] {
  const rows: string[] = [
    '| window (server_max_window_bits = client_max_window_bits) | bytes per connection | above no permessage-deflate |',
    '| --- | --- | --- |',
  ]
  for (const { scenario, summary } of results) {
    if (scenario.id !== 'deflate-memory') continue
    for (const s of summary) {
      const bits = /^rally-takeover-(\d+)$/.exec(s.id)?.[1]
      const window =
        bits === undefined
          ? `no permessage-deflate (${s.label})`
          : `${bits} (${Number(bits) >= 10 ? `${2 ** (Number(bits) - 10)} KiB` : `${2 ** Number(bits)} B`})`
      rows.push(
        `| ${window} | ${spreadText(s.headline, bytes)} | ${s.aboveBaseline === undefined ? '—' : spreadText(s.aboveBaseline, bytes)} |`,
      )
    }
  }
  return rows
}

/** The recovery measurement in one line: round trip, messages, publications, recovered. */
function recoveryLine(result: ScenarioResult): string {
  const samples = Object.values(result.samples).flat()
  const figures = samples.map((s) => s.recovery).filter((r) => r !== undefined)
  if (figures.length === 0) return 'not measured'
  const rtt = spreadText(spread(samples.map((s) => s.headline)), micros)
  const frames = Math.max(...figures.map((f) => f.frames))
  const recovered = figures.every((f) => f.recovered && f.publications === f.missed)
  const bytesPerReply = Math.max(...figures.map((f) => f.replyBytes))
  return `${figures[0]!.missed} missed publications: round trip ${rtt}; ${frames === 1 ? 'one message' : `${frames} messages`} (the reply, ${bytes(bytesPerReply)}); ${recovered ? 'all recovered' : 'NOT all recovered'} (${figures.length} run${figures.length === 1 ? '' : 's'})`
}

/** Issue 12's figures for the real-time layer, each with its target. */
export function realtimeTable(results: ScenarioResult[]): string[] {
  const rows: string[] = ['| figure | measured | target |', '| --- | --- | --- |']
  const cell = (value: Spread | undefined, target: number, lowerWins: boolean): string => {
    if (value === undefined || value.n === 0) return '—'
    return `${spreadText(value, ratio)} ${meets(lowerWins, value.median, target) ? '✅' : '❌'}`
  }
  for (const result of results) {
    const { scenario, summary } = result
    if (scenario.subject === undefined) continue
    const peer = (id: string): ServerSummary | undefined => summary.find((s) => s.id === id)
    if (scenario.kind === 'throughput') {
      if (scenario.targets?.vsRally !== undefined)
        rows.push(
          `| ${scenario.title}: realtime / Rally raw topics, deliveries per server CPU-s | ${cell(peer('rally')?.ratio, scenario.targets.vsRally, false)} | ${targetText(false, scenario.targets.vsRally)} |`,
        )
      if (scenario.targets?.vsSocketIo !== undefined)
        rows.push(
          `| ${scenario.title}: realtime / Socket.IO 4 room broadcast, deliveries per server CPU-s | ${cell(peer('socketio')?.ratio, scenario.targets.vsSocketIo, false)} | ${targetText(false, scenario.targets.vsSocketIo)} |`,
        )
    } else if (scenario.kind === 'memory' && scenario.targets?.vsRally !== undefined) {
      rows.push(
        `| ${scenario.title}: realtime session / bare Rally WebSocket, bytes per connection | ${cell(peer('rally')?.ratio, scenario.targets.vsRally, true)} | ${targetText(true, scenario.targets.vsRally)} |`,
      )
    } else if (scenario.kind === 'recovery') {
      const figures = Object.values(result.samples)
        .flat()
        .map((s) => s.recovery)
        .filter((r) => r !== undefined)
      const met =
        figures.length > 0 &&
        figures.every((f) => f.frames === 1 && f.recovered && f.publications === f.missed)
      rows.push(
        `| ${scenario.title} | ${recoveryLine(result)}${figures.length > 0 ? (met ? ' ✅' : ' ❌') : ''} | one round trip |`,
      )
    }
  }
  return rows
}

/**
 * The targets of issues 13 (transports), 14 (cluster) and 16 (HTTP/2): each scenario's subject
 * against each other server, pair by pair, with the target where the issue sets one.
 */
export function laterIssuesTable(results: ScenarioResult[]): string[] {
  const rows: string[] = [
    '| issue | scenario | figure | measured | target |',
    '| --- | --- | --- | --- | --- |',
  ]
  for (const { scenario, summary } of results) {
    if (scenario.issue === undefined) continue
    const subject = summary.find((s) => s.id === subjectOf(scenario))
    const lower = lowerIsBetter(scenario.kind)
    for (const peer of summary) {
      if (peer === subject || peer.ratio === undefined || peer.ratio.n === 0) continue
      const target = scenario.targets?.peers?.[peer.id]
      const verdict = target === undefined ? '' : meets(lower, peer.ratio.median, target) ? ' ✅' : ' ❌'
      rows.push(
        `| #${scenario.issue} | ${scenario.title} | ${subject?.label ?? subjectOf(scenario)} / ${peer.label}, ${headlineName(scenario)} | ${spreadText(peer.ratio, ratio)}${verdict} | ${targetText(lower, target)} |`,
      )
    }
  }
  return rows
}

/**
 * What the scenarios of issues 13, 14 and 16 do, how their load is generated and their targets:
 * in every report, and in docs/benchmarks.md before a report has their figures.
 */
export function laterIssuesMethod(): string[] {
  return [
    '- **Real-time transports** (issue 13, `--only transports`): one realtime server, `bench/servers/transports.ts` (`createRealtime` served by `listenTransports` on Rally’s own port: rally.v1 WebSocket on `/rt`, SSE and long polling under it through Rally’s own HTTP/1.1 handling; publications made with `realtime.publish` by a rally.v1 RPC `publish` that the load generator’s publisher calls with 64 B texts). `transports-sse`: fan-out to 1,000 subscribers, 8 publications in flight, over SSE (`GET /rt/sse`, one keep-alive connection per subscriber, a `pong` POST acknowledging every 1,000 events so the server frees its replay buffer) against rally.v1 WebSockets driven by the same load generator; target: SSE ≥ 0.5× WebSocket in deliveries per server CPU-second. `transports-lp`: the same over long polling (`GET /rt/poll` held until there is something to send, repeated at once with the acknowledgement) against Socket.IO 4 restricted to Engine.IO’s polling transport (`bench/servers/socketio.ts --polling`: open packet, `40`, a `join` event with an ack, then a GET loop; `io.to(room).emit`); target: ≥ 3× Socket.IO; beside them, Rally’s transports on a node:http server (`--http node`, as behind Express or Hono) and `raw-lp` (`bench/servers/raw-lp.ts`), the least a long-polling server on node:net can do, as a yardstick. `transports-latency`: one subscriber, one publication in flight, from the publisher’s send to the subscriber’s receipt, over WebSocket, SSE, long polling and, for reference, Socket.IO 4 over its websocket and its polling transports; p50 and p99 side by side, no target. All are driven by `bench/loadgen/fanout.ts`, a Node process (long-polling GET loops on raw sockets, each subscriber its own; other requests through a `node:http` keep-alive agent; Rally’s WebSocket client for WebSockets) that reports in the C load generator’s format, with deliveries per poll.',
    '- **Cluster** (issue 14, `--only cluster`): the runner starts a redis-server on a free port (`startRedis` of `test/support/brokers.ts`, as the cluster tests do) and N server processes on the server’s CPU, each with `--redis URL`. Rally: `bench/servers/transports.ts` on `RedisBus` with history on the channel (recovery on: offset, stream append and publish in one Redis script); Socket.IO 4: `@socket.io/redis-adapter` (its connection-state recovery cannot run with it). `cluster-fanout`: 64 B publications to 10,000 subscribers spread over 3 nodes in turn (the C load generator’s `--ports`), the publisher on the first node; deliveries per second and per server CPU-second, the CPU time summed over the node processes (`--server-pids`; Redis’s own CPU is not counted, for either); end-to-end latency from the send time the load generator writes into each text publication and reads back where the payload starts. Target: Rally ≥ 3× Socket.IO per server CPU-second. `cluster-scaling`: the same load on 1, 2 and 3 Rally nodes; on a machine with two cores all nodes share one core (the load generator has the other), so the curve shows the cost of spreading — every node receives every publication from Redis and frames it for its own subscribers — not a gain from more cores.',
    '- **HTTP/2** (issue 16, `--only http2`): one server, `bench/servers/http2.ts` (`node:http2` `createSecureServer` with `allowHTTP1`, `server.attachHttp2`, an echo handler; a self-signed certificate from `test/support/tls.ts`), driven by `bench/loadgen/h2.ts`. `http2-handshake`: 32 concurrent new WebSockets, as extended CONNECTs on one HTTP/2 connection opened beforehand (counted on `200`, then ended — not reset, which nghttp2’s Rapid Reset mitigation answers by closing the connection) against a TCP connection, a TLS handshake (session resumed, as browsers do) and an upgrade each (counted on `101`, then reset); handshakes per server CPU-second. `http2-first-message`: one new socket at a time with Rally’s client (`{ http2: session }` on the open connection, or a new `wss://` connection), from `new WebSocket()` to the echo of 32 B sent on open. `http2-echo`: 32 B binary echo, 100 sockets × 16 in flight, as streams of one HTTP/2 connection or on 100 TLS connections, per server CPU-second. No target: reported side by side.',
  ]
}

/** The report's section for issues 13, 14 and 16: what is measured, then the verdicts if measured. */
export function laterIssuesSection(results: ScenarioResult[]): string[] {
  const out = ['## Transports, cluster and HTTP/2 (issues 13, 14 and 16)', '', ...laterIssuesMethod(), '']
  const rows = laterIssuesTable(results)
  if (rows.length > 2) {
    out.push(
      'Each scenario’s subject (named first) over each other server, pair by pair in the same run; the detailed tables are under Results.',
      '',
      ...rows,
      '',
    )
  }
  return out
}

export function detailTables(results: ScenarioResult[]): string[] {
  const out: string[] = []
  for (const { scenario, summary } of results) {
    const format = headlineFormat(scenario.kind)
    out.push(`### ${scenario.title}`, '')
    out.push(
      `${scenario.note}. Headline: ${headlineName(scenario)}${lowerIsBetter(scenario.kind) ? ' (lower is better)' : ''}.`,
      '',
    )
    if (scenario.kind === 'recovery') {
      out.push(recoveryLine(results.find((r) => r.scenario === scenario)!), '')
      continue
    }
    if (scenario.kind === 'memory') {
      out.push(
        `| server | bytes per connection | ${comparisonHeader(scenario)} | RSS before → after (median run) |`,
        '| --- | --- | --- | --- |',
      )
      for (const s of summary) {
        const samples = results.find((r) => r.scenario === scenario)!.samples[s.id] ?? []
        const mid = samples.slice().sort((a, b) => a.headline - b.headline)[samples.length >> 1]
        const rss =
          mid === undefined
            ? '–'
            : `${((mid.rssBeforeKiB ?? 0) / 1024).toFixed(1)} → ${((mid.rssAfterKiB ?? 0) / 1024).toFixed(1)} MiB`
        out.push(`| ${s.label} | ${spreadText(s.headline, format)} | ${comparisonText(s)} | ${rss} |`)
      }
    } else {
      out.push(
        `| server | ${headlineName(scenario)} | ${scenario.units}/s | p50 | p99 | server CPU | loadgen CPU | server RSS | Rally/this (${scenario.kind === 'latency' ? 'p50' : 'per CPU-s'}) | Rally/this (${scenario.units}/s) | Rally/this (RSS) |`,
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      )
      for (const s of summary) {
        out.push(
          `| ${s.label} | ${spreadText(s.headline, format)} | ${spreadText(s.perSecond, si)} | ${micros(s.p50.median)} | ${micros(s.p99.median)} | ${(s.serverCpuUtil.median * 100).toFixed(0)}% | ${(s.loadgenCpuUtil.median * 100).toFixed(0)}% | ${s.rss ? spreadText(s.rss, mebibytes) : '–'} | ${s.ratio ? spreadText(s.ratio, ratio) : ''} | ${s.ratioPerSecond ? spreadText(s.ratioPerSecond, ratio) : ''} | ${s.ratioRss ? spreadText(s.ratioRss, ratio) : ''} |`,
        )
      }
    }
    out.push('')
  }
  return out
}

// ------------------------------------------------------------------ chart

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

export const PEER_COLORS: Record<string, string> = {
  ws: '#9aa5b1',
  'ws-native': '#52606d',
  'ws-prepared': '#7b8794',
  raw: '#d97706',
  bun: '#b45309',
  rally: '#2f855a',
  socketio: '#6b46c1',
}

/**
 * Horizontal bars, one group per scenario, one bar per peer: how many times better Rally did —
 * Rally/peer for throughput, peer/Rally for latency and memory — so that right of 1× is Rally's
 * side everywhere. Whiskers: min–max of the pairwise ratios. Ticks: the targets, same orientation.
 */
export function chartSvg(results: ScenarioResult[]): string {
  const width = 900
  const left = 330
  const right = 60
  const barHeight = 14
  const gap = 4
  const groupGap = 18
  const top = 56
  let maxValue = 1.5
  const groups = results
    .map(({ scenario, summary }) => {
      const invert = lowerIsBetter(scenario.kind)
      const bars = summary
        .filter((s) => s.ratio !== undefined && s.ratio.n > 0)
        .map((s) => {
          const r = s.ratio!
          const f = (v: number): number => (invert ? 1 / v : v)
          const lo = Math.min(f(r.min), f(r.max))
          const hi = Math.max(f(r.min), f(r.max))
          const target =
            scenario.targets?.peers !== undefined
              ? scenario.targets.peers[s.id]
              : scenario.subject !== undefined
                ? s.id === 'rally'
                  ? scenario.targets?.vsRally
                  : s.id === 'socketio'
                    ? scenario.targets?.vsSocketIo
                    : undefined
                : s.id === 'raw'
                  ? scenario.targets?.vsRaw
                  : s.id === 'bun'
                    ? scenario.targets?.vsBun
                    : s.id === wsPeer(summary)?.id
                      ? scenario.targets?.vsWs
                      : undefined
          return {
            id: s.id,
            label: s.label,
            value: f(r.median),
            lo,
            hi,
            target: target === undefined ? undefined : f(target),
          }
        })
      for (const bar of bars) maxValue = Math.max(maxValue, bar.hi, bar.target ?? 0)
      return { scenario, bars }
    })
    .filter((group) => group.bars.length > 0)
  // Log scale, bars drawn from 1×: ratios of 0.7× and 10× both stay readable.
  let minValue = 0.5
  for (const group of groups)
    for (const bar of group.bars) minValue = Math.min(minValue, bar.lo, bar.target ?? 1)
  minValue = 2 ** Math.floor(Math.log2(minValue))
  maxValue = 2 ** Math.ceil(Math.log2(maxValue * 1.05))
  const plotWidth = width - left - right
  const span = Math.log(maxValue) - Math.log(minValue)
  const x = (v: number): number =>
    left + ((Math.log(Math.min(Math.max(v, minValue), maxValue)) - Math.log(minValue)) / span) * plotWidth
  let height = top
  for (const group of groups) height += group.bars.length * (barHeight + gap) + groupGap
  height += 40
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12" role="img" aria-labelledby="chart-title">`,
    '<title id="chart-title">Rally compared with ws, ws with bufferutil and a raw node:net server, per scenario</title>',
  )
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(
    `<text x="20" y="20" font-size="14" font-weight="600">How many times better Rally did than each peer (median; whiskers: min–max of the pairwise ratios)</text>`,
  )
  out.push(
    `<text x="20" y="38" fill="#52606d">Throughput: Rally/peer per server CPU-second. Latency, memory: peer/Rally. Right of 1× favours Rally. Log scale. ◆ target.</text>`,
  )
  // Grid.
  const ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64].filter((v) => v >= minValue && v <= maxValue)
  for (const v of ticks) {
    const gx = x(v)
    const one = v === 1
    out.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${height - 34}" stroke="${one ? '#1f2933' : '#e4e7eb'}" stroke-width="${one ? 1.5 : 1}"/>`,
    )
    out.push(`<text x="${gx}" y="${height - 20}" text-anchor="middle" fill="#52606d">${v}×</text>`)
  }
  let y = top
  for (const { scenario, bars } of groups) {
    const groupHeight = bars.length * (barHeight + gap)
    out.push(
      `<text x="${left - 160}" y="${y + groupHeight / 2 + 4}" text-anchor="end" font-weight="600">${escapeXml(shortTitle(scenario))}</text>`,
    )
    for (const bar of bars) {
      const color = PEER_COLORS[bar.id] ?? '#52606d'
      out.push(
        `<text x="${left - 8}" y="${y + barHeight - 3}" text-anchor="end" fill="#3e4c59">vs ${escapeXml(bar.label)}</text>`,
      )
      out.push(
        `<rect x="${Math.min(x(1), x(bar.value))}" y="${y}" width="${Math.max(1, Math.abs(x(bar.value) - x(1)))}" height="${barHeight}" fill="${color}" rx="2"/>`,
      )
      const wy = y + barHeight / 2
      out.push(
        `<line x1="${x(bar.lo)}" y1="${wy}" x2="${x(bar.hi)}" y2="${wy}" stroke="#1f2933" stroke-width="1"/>`,
      )
      out.push(`<line x1="${x(bar.lo)}" y1="${wy - 4}" x2="${x(bar.lo)}" y2="${wy + 4}" stroke="#1f2933"/>`)
      out.push(`<line x1="${x(bar.hi)}" y1="${wy - 4}" x2="${x(bar.hi)}" y2="${wy + 4}" stroke="#1f2933"/>`)
      if (bar.target !== undefined) {
        const tx = x(bar.target)
        out.push(
          `<path d="M${tx} ${wy - 6} L${tx + 5} ${wy} L${tx} ${wy + 6} L${tx - 5} ${wy} Z" fill="#2563eb" opacity="0.85"/>`,
        )
      }
      out.push(
        `<text x="${Math.min(Math.max(x(bar.hi), x(1)), width - right) + 6}" y="${y + barHeight - 3}" fill="#1f2933">${bar.value.toFixed(2)}×</text>`,
      )
      y += barHeight + gap
    }
    y += groupGap
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

export function shortTitle(scenario: Scenario): string {
  const titles: Record<string, string> = {
    'echo-32': 'echo 32 B',
    'echo-16k': 'echo 16 KiB',
    'rtt-32': 'RTT p50, 1 conn',
    'deflate-1k': 'echo 1 KiB deflate',
    'deflate-1k-defaults': '1 KiB deflate, defaults',
    'deflate-1k-takeover': '1 KiB deflate, takeover',
    'broadcast-1k': 'broadcast → 1,000',
    'broadcast-10k': 'broadcast → 10,000',
    handshake: 'handshakes',
    'idle-10k': `idle memory, ${(scenario.connections ?? 0).toLocaleString('en-US')}`,
    'idle-max': `idle memory, ${(scenario.connections ?? 0).toLocaleString('en-US')}`,
    'realtime-fanout': 'realtime fan-out',
    'realtime-idle': 'realtime idle memory',
  }
  return titles[scenario.id] ?? scenario.id
}

// ------------------------------------------------------------------ machine, report

export interface Machine {
  cpus: number
  cpuModel: string
  memoryGiB: number
  node: string
  ws: string
  /** Bun's version, or why it could not run (the benchmark then runs without it). */
  bun: string
  kernel: string
  openFiles: number
  pinned: boolean
  loadAverageBefore: string
}

export function machineInfo(options: Options, openFiles: number, bun: string): Machine {
  let model = cpus()[0]?.model ?? 'unknown'
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
    const match = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)
    if (match !== null) model = match[1]!.trim()
  } catch {
    // Not Linux.
  }
  let kernel = ''
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
  } catch {
    kernel = process.platform
  }
  let load = ''
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    load = '?'
  }
  const wsVersion = (
    JSON.parse(readFileSync(join(ROOT, 'node_modules', 'ws', 'package.json'), 'utf8')) as { version: string }
  ).version
  return {
    cpus: availableParallelism(),
    cpuModel: model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    ws: wsVersion,
    bun,
    kernel,
    openFiles,
    pinned: options.pin,
    loadAverageBefore: load,
  }
}

/**
 * Issue 17: "Where Bun cannot be installed, the benchmark says so and runs without it" — and the
 * report says so above the table whose Bun column is then empty.
 */
export function bunAvailability(machine: Machine): string[] {
  if (machine.bun.startsWith('not available'))
    return [
      `**Bun could not run on this machine** (${machine.bun.replace(/^not available \((.*)\)$/, '$1')}): the benchmark ran without it, so the “Rally vs Bun” column is empty. \`npm ci\` installs the \`bun\` development dependency where its native binary exists for the platform.`,
      '',
    ]
  if (machine.bun === 'not run')
    return ['Bun was left out of this run (`--servers`): the “Rally vs Bun” column is empty.', '']
  return []
}

/** A heading, its introduction and a table, when the table has rows beyond its header (two lines). */
function section(out: string[], heading: string, intro: string, rows: string[]): void {
  if (rows.length <= 2) return
  out.push(heading, '', intro, '', ...rows, '')
}

/** "28 minutes", "1 minute", "under a minute". */
export function minutesText(seconds: number): string {
  const minutes = Math.round(seconds / 60)
  return minutes < 1 ? 'under a minute' : minutes === 1 ? '1 minute' : `${minutes} minutes`
}

/** Where a scenario measures longer than --duration (its minDuration), the report says so. */
function longerWindows(results: ScenarioResult[], options: Options): string {
  const longer = results
    .map((result) => result.scenario)
    .filter((scenario) => (scenario.minDuration ?? 0) > options.duration)
  if (longer.length === 0) return ''
  const seconds = Math.max(...longer.map((scenario) => scenario.minDuration ?? 0))
  return ` (${seconds} s in ${longer.map((scenario) => scenario.id).join(', ')}: CPU time is counted in 10 ms ticks)`
}

export function markdown(
  results: ScenarioResult[],
  machine: Machine,
  options: Options,
  startedAt: Date,
  seconds: number,
): string {
  const out: string[] = []
  out.push('# Benchmarks', '')
  out.push(
    `Generated by \`npm run bench${options.quick ? ' -- --quick' : options.reps === 5 ? '' : ` -- --reps ${options.reps}`}\` (bench/run.ts; \`rally bench\` from a clone runs the same) on ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC in ${minutesText(seconds)}. Do not edit by hand: run it again. Raw results: \`bench/results/bench.json\` (not committed).`,
    '',
  )
  out.push(
    'Rally side by side with `ws` (plain, and with `bufferutil`), `ws` with a pre-framed broadcast buffer, a raw `node:net` server that completes the handshake and then echoes bytes unmodified — the upper limit of one Node.js thread on this machine — and Bun’s built-in WebSocket server (uWebSockets, native code) as the reference of issue 17. Ratios are Rally/peer computed repetition by repetition in the same run; the headline figure is work per server CPU-second.',
    '',
  )
  out.push('## Summary against the targets (issues 7 and 17)', '')
  out.push(...bunAvailability(machine))
  out.push(...targetsTable(results), '')
  section(
    out,
    '## Memory per connection with context takeover (issue 17)',
    'Rally with permessage-deflate and context takeover both ways keeps a compressor and a decompressor per connection; their size follows the window the client’s offer asks for (`server_max_window_bits`, `client_max_window_bits`, RFC 7692 7.1.2) and `memLevel` (8, the default, here). Each connection exchanged one 1 KiB JSON message, then stayed idle; “above no permessage-deflate” is the difference from connections that exchanged the same message uncompressed, pair by pair. No target: the trade-off is in docs/deflate.md. Without context takeover (Rally’s default) a connection holds no zlib memory.',
    takeoverMemoryTable(results),
  )
  section(
    out,
    '## The real-time layer against the targets of issue 12',
    'Ratios of Rally’s real-time layer (`rallyjs/realtime`, rally.v1) to each peer, in the same run, pair by pair; in the chart its bars are the realtime layer against Rally’s raw topics (or a bare Rally connection) and against Socket.IO 4.',
    realtimeTable(results),
  )
  out.push(...laterIssuesSection(results))
  const missing = SCENARIO_IDS.filter((id) => !results.some((result) => result.scenario.id === id))
  if (missing.length > 0)
    out.push(
      `Not in this run: ${missing.map((id) => `\`${id}\``).join(', ')}. A full run (\`npm run bench\`, no options) runs every scenario.`,
      '',
    )
  out.push('![Rally compared with each peer](benchmarks.svg)', '')
  out.push('## Results', '')
  out.push(
    `Median [min–max] of ${options.reps} interleaved repetitions (${options.memoryReps} for memory at 10,000 connections, ${Math.min(2, options.memoryReps)} at the most connections and with context takeover). ${options.duration} s measured${longerWindows(results, options)} after ${options.warmup} s of warm-up per repetition. "server CPU" is the server's CPU time over wall time in the measured window (100% = one core); "loadgen CPU" the same for the load generator, which shows it had headroom. "server RSS" is the server's resident set at its peak in the measured window (see Method).`,
    '',
  )
  out.push(...detailTables(results))
  out.push('## Method', '')
  out.push(
    '- **Load generator**: `bench/loadgen/loadgen.c`, one thread, epoll, non-blocking sockets, built by the runner with the machine’s `cc -O2`. It does the HTTP upgrade itself and sends frames built once at start (masked, as clients must); it parses every frame it receives (headers split across reads, extended lengths; masked frames from the raw server are accepted). Latency comes from a log-linear histogram (error < 1.6%).',
    '- **Servers** (`bench/servers/`): each a child process on a free port of 127.0.0.1, started with `node --expose-gc --import tsx`, source-mapped stack traces off (tsx turns them on; mapping the stack of every socket error would cost each server several percent of a handshake). Rally runs with its defaults (the heartbeat on: a ping every 30 s) but `decodeText: false` (ws hands text over as a Buffer too), so neither decodes text in an echo. `ws` plain runs with `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1`; “ws + bufferutil” without them (on Node ≥ 18.14 ws validates UTF-8 with `buffer.isUtf8` either way, so only masking changes). The raw server writes back what it reads: the client’s masked frames return as they are, and the load generator accepts them from this peer.',
    '- **Pinning**: with two or more cores the server runs on CPU 0 and the load generator on CPU 1 (`taskset`). The machine is shared with other work, so throughput moves with it; CPU time per unit of work moves much less, which is why it is the headline.',
    '- **CPU time**: the load generator reads the server’s utime+stime (all threads, zlib’s thread pool included) from `/proc/PID/stat` and its own from `getrusage` at the edges of the measured window.',
    '- **Server RSS** (throughput and latency scenarios): the peak of the server’s resident set over the measured window, which the load generator reads from `/proc/PID/statm` (the count `VmRSS` shows: heap, buffers, zlib’s memory, code) at both edges of the window and every 50 ms in between; the raw results keep the values at the edges too. The peak rather than the end, since memory held only under load (compression state, write backlogs) counts as much. A server is started once for all the scenarios with the same server arguments and repetitions follow one another, so the figure includes what its heap kept from the runs before; each deflate scenario has servers of its own. Rally/peer is taken pair by pair, like the other ratios.',
    '- **Echo**: every connection keeps a window of messages in flight; each echo is timed against its send time (a per-connection ring: echoes return in order) and replaced at once.',
    `- **permessage-deflate**: the client sends 1 KiB of JSON-like text compressed once at start (raw deflate of that message alone, RSV1), so every message is the same bytes; with context takeover that is valid too (a message need not refer to earlier ones). Every echo is compressed. “without context takeover”: the client offers \`${OFFER_FAIR}\`, Rally runs with \`perMessageDeflate: true\` (no context takeover, level 1, threshold 1024 by default), ws with the same parameters (\`serverNoContextTakeover\`, \`clientNoContextTakeover\`, level 1, memLevel 8, threshold 1024), Bun with \`perMessageDeflate: true\` (its shared compressor and decompressor, which answer with no context takeover either way). “each server’s defaults”: \`perMessageDeflate: true\` everywhere and the offer browsers send, \`${OFFER_BROWSER}\`; ws then keeps a compressor per connection (context takeover, zlib’s default level), Rally and Bun do not. “with context takeover”: the browser offer again, every server with context takeover both ways (Rally \`serverNoContextTakeover: false, clientNoContextTakeover: false\`, ws the same at level 1, Bun \`{ compress: "dedicated", decompress: "dedicated" }\`). Memory with context takeover (\`deflate-memory\`): the idle-memory measurement below, each connection first exchanging one such message (the load generator’s \`--once\`) with an offer of \`server_max_window_bits=N; client_max_window_bits=N\` and the message compressed with a 2^N window, against Rally without permessage-deflate exchanging it uncompressed.`,
    '- **Broadcast**: subscribers connect on `/sub`, then one publisher on `/pub`. The publisher sends 64-byte messages that carry their send time (CLOCK_MONOTONIC); the server publishes each to every subscriber (Rally `server.publish(topic, data)`; ws `for (const client of wss.clients) client.send(data)`; ws pre-framed: `WebSocket.Sender.frame()` once, the same Buffer written to each `ws._socket`; raw: framed once, one write per subscriber of what arrived in one read). Closed loop: 8 broadcasts in flight, counted in deliveries, so the server is busy without buffering without bound. Latency: arrival time minus send time, the same clock on both sides.',
    '- **Handshakes**: 32 concurrent slots connect, send an upgrade request, check the 101 and its `Sec-WebSocket-Accept`, then reset the connection (SO_LINGER 0, so no TIME_WAIT) and start over. The reset costs every server an `ECONNRESET` error object, about a tenth of a handshake’s CPU. Client ports are chosen by the load generator in turn (the kernel’s search for a free port slows down with tens of thousands of connections to one address).',
    '- **Bun** (a reference, issue 17): `bench/servers/bun.ts` runs under the `bun` dev dependency’s binary with `Bun.serve` and its built-in WebSocket server: echo with `ws.send`, broadcast with Bun’s topics (`server.publish`), `perMessageDeflate: true` in the deflate scenarios. Where Bun cannot run, the runner says why and measures without it (the Machine section says which).',
    '- **Real-time layer** (issue 12): `bench/servers/realtime.ts` (`createRealtime`, rally.v1 on `/sub`, a channel with presence; the publisher’s messages go through `realtime.publish`) and `bench/servers/socketio.ts` (Socket.IO 4, websocket transport only, `io.to(room).emit`). The load generator speaks both protocols (`--proto rally|socketio`): rally.v1 `connect` then `subscribe`; Engine.IO open packet, `40` namespace connect, a `join` event with an ack; it answers pings (`{"cmd":"pong"}`, `3`), starts publishing once every subscriber is confirmed, and counts only publications as deliveries. Publications are the same 64 B of text for every server (latency is not read back from text publications). Recovery runs from the runner’s process over Rally’s WebSocket client (`bench/recovery.ts`).',
    '- **Idle memory**: a fresh server; full GC (twice), VmRSS from `/proc/PID/status`; open N connections and wait until all are upgraded; wait 1 s, full GC, VmRSS again. (after − before) ÷ N. Kernel socket buffers are not in RSS and are the same for every server.',
    '- **Statistics**: servers are interleaved within each repetition, the order reversed every other repetition (A B C D, D C B A, …). Ratios Rally/peer are taken within a repetition, then summarized: median [min–max].',
    '',
  )
  out.push('## Machine', '')
  out.push(
    `- ${machine.cpus} CPUs: ${machine.cpuModel}; ${machine.memoryGiB} GiB; Linux ${machine.kernel}`,
    `- Node.js ${machine.node}; ws ${machine.ws}; Bun ${machine.bun}; open-file limit ${machine.openFiles}`,
    `- Pinned: ${machine.pinned ? 'server on CPU 0, load generator on CPU 1' : 'no'}; load average at the start: ${machine.loadAverageBefore}`,
    '',
  )
  if (existsSync(NOTES)) {
    out.push(readFileSync(NOTES, 'utf8').trim(), '')
  }
  return out.join('\n')
}
