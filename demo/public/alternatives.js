// The alternatives compared live: one server stream, four deliveries. Polling is a plain fetch
// loop; long polling, SSE and WebSocket are RallyClients each forced onto one transport. Every
// request names its lane and this page's viewer id, so the server can count each lane's bytes.

import { randomHex, realtimeUrl } from '/connection.js'
import { RallyClient } from '/rally/client/index.js'

const LANES = ['polling', 'long-polling', 'sse', 'websocket']
const POLL_EVERY_MS = 1000
const BYTES_EVERY_MS = 2000
const SAMPLES = 60

const viewer = randomHex(8)
const lanes = new Map()

function query(lane) {
  return `lane=${lane}&viewer=${viewer}`
}

function percentile(sorted, p) {
  if (sorted.length === 0) return undefined
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

function formatMs(ms) {
  return ms === undefined ? '–' : `${Math.round(ms)} ms`
}

function formatBytes(bytes) {
  if (bytes === undefined || !Number.isFinite(bytes)) return '–'
  return bytes >= 10_000 ? `${(bytes / 1024).toFixed(1)} KiB` : `${Math.round(bytes)} B`
}

function laneState(lane) {
  const element = document.querySelector(`[data-lane="${lane}"]`)
  const state = {
    lane,
    element,
    connection: 'connecting',
    transport: lane,
    received: 0,
    lastSeq: 0,
    latencies: [],
    bytes: undefined,
    /** Bytes and messages when the lane's first message had arrived: the handshake is left out. */
    baseline: undefined,
  }
  lanes.set(lane, state)
  return state
}

function receive(state, message) {
  if (message.seq <= state.lastSeq) return
  state.lastSeq = message.seq
  state.received++
  state.latencies.push(Date.now() - message.at)
  if (state.latencies.length > SAMPLES) state.latencies.shift()
  render(state)
}

function render(state) {
  const sorted = [...state.latencies].sort((a, b) => a - b)
  let perMessage
  if (state.baseline !== undefined && state.bytes !== undefined) {
    const messages = state.bytes.received - state.baseline.received
    if (messages > 0)
      perMessage = {
        down: (state.bytes.down - state.baseline.down) / messages,
        up: (state.bytes.up - state.baseline.up) / messages,
        requests: (state.bytes.requests - state.baseline.requests) / messages,
      }
  }
  const rows = [
    ['transport', state.transport],
    ['messages', String(state.received)],
    ['latency p50', formatMs(percentile(sorted, 0.5))],
    ['latency p95', formatMs(percentile(sorted, 0.95))],
    ['bytes/msg ↓', formatBytes(perMessage?.down)],
    ['bytes/msg ↑', formatBytes(perMessage?.up)],
    ['requests/msg', perMessage === undefined ? '–' : perMessage.requests.toFixed(2)],
  ]
  const list = state.element.querySelector('dl')
  list.replaceChildren(
    ...rows.flatMap(([name, value]) => {
      const term = document.createElement('dt')
      term.textContent = name
      const detail = document.createElement('dd')
      detail.textContent = value
      detail.dataset.figure = name
      return [term, detail]
    }),
  )
  const status = state.element.querySelector('.state')
  status.textContent = state.connection
  status.classList.toggle('connected', state.connection === 'connected')
  // Figures are stale while the lane is away: dimmed until it delivers again.
  list.classList.toggle('stale', state.connection !== 'connected')
  state.element.dataset.state = state.connection
  state.element.dataset.received = String(state.received)
  state.element.dataset.measured = String(perMessage !== undefined)
  renderHeader()
}

function renderHeader() {
  const up = [...lanes.values()].filter((state) => state.connection === 'connected').length
  const all = up === LANES.length
  document.body.dataset.connection = all ? 'connected' : up === 0 ? 'disconnected' : 'partial'
  document.getElementById('state').textContent = `${up}/${LANES.length} lanes connected`
  document.querySelector('.status .dot').classList.toggle('online', all)
}

/** Polling: ask for what is new, wait, ask again. Failures are shown and retried. */
function startPolling() {
  const state = laneState('polling')
  async function poll() {
    try {
      const response = await fetch(`/compare/poll?after=${state.lastSeq}&${query('polling')}`)
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const { messages } = await response.json()
      state.connection = 'connected'
      // The first answer brings the backlog: only later messages are timed.
      if (state.lastSeq === 0 && messages.length > 0) {
        state.lastSeq = messages[messages.length - 1].seq
        render(state)
      } else for (const message of messages) receive(state, message)
      render(state)
    } catch {
      state.connection = 'offline, retrying'
      render(state)
    }
    setTimeout(poll, POLL_EVERY_MS)
  }
  render(state)
  poll()
}

function startClient(lane) {
  const state = laneState(lane)
  const url = realtimeUrl(`/compare/rt?${query(lane)}`)
  // probeInterval false: the lane must stay on its transport, never move up to a better one.
  const client = new RallyClient(url, { transports: [lane], probeInterval: false })
  const stream = client.channel('compare:stream', { recover: false })
  const show = () => {
    state.connection = client.state
    state.transport = client.transport ?? lane
    render(state)
  }
  client.on('state', show)
  client.on('connected', show)
  stream.on('publication', (pub) => receive(state, pub.data))
  render(state)
  client.connect()
  return client
}

async function fetchBytes() {
  try {
    const response = await fetch(`/compare/bytes?viewer=${viewer}`)
    const { lanes: measured, sent } = await response.json()
    document.getElementById('sent').textContent = `The server has sent ${sent} messages on the stream.`
    if (measured !== null)
      for (const state of lanes.values()) {
        const bytes = { ...measured[state.lane], received: state.received }
        state.bytes = bytes
        if (state.baseline === undefined && state.received > 0) state.baseline = bytes
        render(state)
      }
  } catch {
    // The lanes show the connection; the figures stay as they were, dimmed by their lanes.
  }
  setTimeout(fetchBytes, BYTES_EVERY_MS)
}

startPolling()
window.rallyLanes = ['long-polling', 'sse', 'websocket'].map(startClient)
fetchBytes()
