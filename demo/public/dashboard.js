// The live dashboard: the server node's figures, published once a second on a realtime channel
// (src/demo/dashboard.ts), charted with uPlot (served by the demo from its npm package).
import { RallyClient } from '/rally/client/index.js'

// uPlot comes from the server's node_modules; without it the figures still update, and the page
// says what is missing instead of failing as a whole.
const uPlot = await import('/vendor/uplot/uPlot.esm.js').then(
  (module) => module.default,
  () => undefined,
)

const $ = (id) => document.getElementById(id)
/** Points kept per chart: ten minutes at one a second. */
const KEEP = 600
/** Channels charted one by one (the server lists the 20 most subscribed; the rest are summed). */
const CHANNEL_LINES = 8
const TRANSPORTS = ['websocket', 'sse', 'long-polling']
const css = getComputedStyle(document.documentElement)
const color = (name) => css.getPropertyValue(name).trim()
const PALETTE = [
  color('--accent'),
  color('--accent2'),
  color('--ok'),
  color('--warn'),
  '#ff6b8b',
  '#7be0d6',
  '#e0c27b',
  '#b0b8cc',
]

// ------------------------------------------------------------------------------------ formatting

function rate(value) {
  if (value == null) return '–'
  return value >= 1000
    ? `${(value / 1000).toFixed(1)}k`
    : value.toFixed(value < 10 && value % 1 !== 0 ? 1 : 0)
}

function bytes(value) {
  if (value == null) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}

// ------------------------------------------------------------------------------------ the charts

/** One chart: its series read from a sample; `data` is uPlot's columns (times first). */
class Chart {
  constructor(element, { series, format = rate, scales, minMax = 1 }) {
    this.element = element
    this.series = series
    this.data = [[], ...series.map(() => [])]
    this.plot = uPlot && new uPlot(this.options(format, scales, minMax), this.data, element)
  }

  options(format, scales, minMax) {
    const axisStyle = {
      stroke: color('--muted'),
      grid: { stroke: color('--line'), width: 1 },
      ticks: { stroke: color('--line') },
    }
    const axes = [
      axisStyle,
      // Wide enough for "255.1 MiB": uPlot draws labels on its canvas and cuts what overflows.
      { ...axisStyle, size: 72, values: (_u, ticks) => ticks.map((tick) => format(tick)) },
    ]
    if (scales?.right)
      axes.push({
        ...axisStyle,
        side: 1,
        scale: 'right',
        size: 52,
        grid: { show: false },
        values: (_u, ticks) => ticks.map(scales.right.format),
      })
    return {
      width: this.width(),
      height: 170,
      // Time axis in seconds (uPlot's default x scale), local time on the ticks.
      scales: {
        x: { time: true },
        y: { range: (_u, _min, max) => [0, Math.max(max, minMax)] },
        ...(scales?.right ? { right: { range: scales.right.range } } : {}),
      },
      axes,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      series: [
        {},
        ...this.series.map((line, index) => ({
          label: line.label,
          scale: line.scale ?? 'y',
          stroke: line.color ?? PALETTE[index % PALETTE.length],
          width: 2,
          value: (_u, value) => (line.format ?? format)(value),
          points: { show: false },
        })),
      ],
    }
  }

  width() {
    return Math.max(200, this.element.clientWidth)
  }

  add(sample) {
    this.data[0].push(sample.at / 1000)
    for (const [index, line] of this.series.entries()) this.data[index + 1].push(line.read(sample))
    if (this.data[0].length > KEEP) for (const column of this.data) column.shift()
  }

  clear() {
    for (const column of this.data) column.length = 0
  }

  draw() {
    if (!this.plot) return
    this.plot.setData(this.data)
    // Away from the cursor, the legend shows the latest values rather than dashes.
    if (this.plot.cursor.idx == null && this.data[0].length > 0)
      this.plot.setLegend({ idx: this.data[0].length - 1 })
  }

  resize() {
    this.plot?.setSize({ width: this.width(), height: 170 })
  }

  destroy() {
    this.plot?.destroy()
  }
}

if (!uPlot) {
  const notice = document.createElement('p')
  notice.className = 'banner'
  notice.textContent =
    'The charts need uPlot on the server (npm install uplot); the figures above still update.'
  $('charts').before(notice)
}

const charts = {
  sessions: new Chart($('chart-sessions'), {
    series: [
      ...TRANSPORTS.map((transport) => ({ label: transport, read: (s) => s.sessions[transport] ?? 0 })),
      { label: 'TCP connections', read: (s) => s.connections, color: '#b0b8cc' },
    ],
  }),
  messages: new Chart($('chart-messages'), {
    series: [
      { label: 'publications / s', read: (s) => s.publicationsPerSecond },
      { label: 'deliveries / s', read: (s) => s.deliveriesPerSecond },
    ],
  }),
  bytes: new Chart($('chart-bytes'), {
    format: bytes,
    minMax: 1024,
    series: [
      { label: 'in / s', read: (s) => s.bytesInPerSecond },
      { label: 'out / s', read: (s) => s.bytesOutPerSecond },
    ],
  }),
  loop: new Chart($('chart-loop'), {
    format: (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${rate(ms)} ms`),
    scales: { right: { format: (ratio) => `${Math.round(ratio * 100)}%`, range: () => [0, 1] } },
    series: [
      { label: 'lag (mean)', read: (s) => s.eventLoopLagMs },
      { label: 'lag (max)', read: (s) => s.eventLoopLagMaxMs },
      {
        label: 'busy',
        scale: 'right',
        read: (s) => s.eventLoopUtilization,
        format: (ratio) => (ratio == null ? '–' : `${(ratio * 100).toFixed(1)}%`),
      },
    ],
  }),
  memory: new Chart($('chart-memory'), {
    format: bytes,
    series: [
      { label: 'RSS', read: (s) => s.rssBytes },
      { label: 'heap used', read: (s) => s.heapUsedBytes },
    ],
  }),
  channels: undefined,
}

/** The channel lines change as channels come and go: the chart is rebuilt with the new set. */
let channelNames = []
const samples = []

function channelChart(names) {
  charts.channels?.destroy()
  channelNames = names
  charts.channels = new Chart($('chart-channels'), {
    series: names.map((name) => ({
      label: name,
      read: (s) => s.channels.find((entry) => entry.channel === name)?.subscribers ?? 0,
    })),
  })
  for (const sample of samples) charts.channels.add(sample)
}

function wantedChannels(sample) {
  const names = new Set(channelNames)
  for (const { channel } of sample.channels) if (names.size < CHANNEL_LINES) names.add(channel)
  return [...names]
}

// ------------------------------------------------------------------------------------ the figures

function showFigures(sample) {
  const total = Object.values(sample.sessions).reduce((sum, n) => sum + n, 0)
  const byTransport = Object.entries(sample.sessions)
    .map(([transport, count]) => `${transport} ${count}`)
    .join(' · ')
  $('sessions').textContent = String(total)
  $('sessions').title = byTransport
  $('publications').textContent = rate(sample.publicationsPerSecond)
  $('deliveries').textContent = rate(sample.deliveriesPerSecond)
  $('bytes').textContent = `${bytes(sample.bytesInPerSecond)} / ${bytes(sample.bytesOutPerSecond)}`
  $('lag').textContent =
    `${sample.eventLoopLagMs.toFixed(1)} ms · ${Math.round(sample.eventLoopUtilization * 100)}%`
  $('memory').textContent = `${bytes(sample.rssBytes)} · ${bytes(sample.heapUsedBytes)}`
}

/** Adds samples (oldest first, none seen twice) and redraws once. */
function addSamples(list) {
  const fresh = list.filter((sample) => samples.length === 0 || sample.at > samples.at(-1).at)
  if (fresh.length === 0) return
  for (const sample of fresh) {
    samples.push(sample)
    if (samples.length > KEEP) samples.shift()
    for (const chart of Object.values(charts)) chart?.add(sample)
  }
  const last = fresh.at(-1)
  const names = wantedChannels(last)
  if (charts.channels === undefined || names.length !== channelNames.length) channelChart(names)
  for (const chart of Object.values(charts)) chart.draw()
  showFigures(last)
  document.body.dataset.samples = String(samples.length)
  document.body.dataset.points = String(charts.messages.data[0].length)
}

function clearSamples() {
  samples.length = 0
  for (const chart of Object.values(charts)) chart?.clear()
  channelChart([])
}

// ------------------------------------------------------------------------------------ the connection

const params = new URLSearchParams(location.search)
const forced = params.get('transport')
const client = new RallyClient(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/rt`, {
  // WebSocket first; SSE then long polling where a proxy lets nothing else through.
  transports: forced ? [forced] : TRANSPORTS,
})
// For the console (and the browser test): the client and the charts' data.
window.rallyClient = client
window.dashboardCharts = charts
let subscription
let followed

function showConnection() {
  const connected = client.state === 'connected'
  document.body.dataset.connection = client.state
  document.body.dataset.transport = client.transport ?? ''
  $('state').textContent = client.state
  $('transport').textContent = client.transport ?? '–'
  document.querySelector('.status .dot').classList.toggle('online', connected)
  // Figures that stopped moving are dimmed until the connection is back.
  for (const id of ['figures', 'charts']) $(id).classList.toggle('stale', !connected)
}

async function follow() {
  const { channel, node } = await client.rpc('dashboard.channel')
  $('node').textContent = node
  $('channel').textContent = channel
  if (followed === channel) return
  // Another node (a load balancer sent the reconnect elsewhere): its own figures from now on.
  subscription?.unsubscribe()
  clearSamples()
  followed = channel
  subscription = client.channel(channel)
  subscription.on('subscribed', async ({ recovered }) => {
    if (!recovered) {
      // The last minutes at once, rather than an empty chart filling up.
      const { publications } = await subscription.history({ limit: 120 })
      clearSamples()
      addSamples(publications.map((pub) => pub.data))
    }
    document.body.dataset.subscribed = 'true'
  })
  subscription.on('publication', (pub) => addSamples([pub.data]))
}

client.on('state', showConnection)
client.on('connected', () => {
  showConnection()
  follow().catch((error) => {
    document.body.dataset.error = error.message
  })
})
showConnection()
client.connect()

new ResizeObserver(() => {
  for (const chart of Object.values(charts)) chart?.resize()
}).observe($('charts'))
