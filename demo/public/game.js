// The arena: the server moves every player at its tick and publishes frames on game:arena; this
// page sends only its direction (RPC game.input, whose reply times the round trip) and draws
// the players between the last two frames it has, a little in the past, so motion stays smooth
// whatever the jitter of their arrival.

import { randomHex, realtimeUrl, showConnection as showState } from '/connection.js'
import { RallyClient } from '/rally/client/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
/** Sends the current direction at least this often, with the last round trip measured. */
const KEEPALIVE_MS = 1000
const MAX_IN_FLIGHT = 4

const nick = params.get('nick') ?? `guest-${randomHex(2)}`
const client = new RallyClient(realtimeUrl('/rt'), { token: nick })
/** This node's arena channel, named by game.join (each node of a cluster runs its own arena). */
let arena
const canvas = $('arena')
const context = canvas.getContext('2d')

let me
let world = { width: 800, height: 500, playerRadius: 14, starRadius: 10 }
/** Recent frames, oldest first. */
const frames = []
/** Smallest (arrival − server time) seen: the offset of the server's clock plus the fastest delivery. */
let offset = Number.POSITIVE_INFINITY
let tickMs = 50
let rtt
let inFlight = 0
let lastSentAt = 0
let dirty = false
const direction = { dx: 0, dy: 0 }
const keys = new Set()
let pointer

window.game = {
  client,
  frames,
  get me() {
    return me
  },
}

function showConnection() {
  // Stale while away: the last frame stays, dimmed, until frames come again.
  $('offline').hidden = showState(client, [canvas, $('scores')])
}

async function join() {
  try {
    const joined = await client.rpc('game.join', {})
    watch(joined.channel)
    me = joined.id
    world = joined.arena
    tickMs = joined.tickMs
    $('me').textContent = `${nick} (${me})`
    document.body.dataset.joined = me
    dirty = true
    sendInput()
  } catch (error) {
    $('me').textContent = `could not join: ${error.message}`
  }
}

function sendInput() {
  if (me === undefined || client.state !== 'connected') return
  if (inFlight >= MAX_IN_FLIGHT) {
    dirty = true
    return
  }
  dirty = false
  inFlight++
  lastSentAt = Date.now()
  const started = performance.now()
  client
    .rpc('game.input', { dx: direction.dx, dy: direction.dy, rtt }, { timeout: 5000 })
    .then(() => {
      rtt = performance.now() - started
      $('rtt').textContent = `${Math.round(rtt)} ms`
    })
    // A lost input is replaced by the next one: nothing to retry.
    .catch(() => {})
    .finally(() => {
      inFlight--
      if (dirty) sendInput()
    })
}

function updateDirection() {
  let dx = 0
  let dy = 0
  if (keys.has('ArrowLeft') || keys.has('a')) dx -= 1
  if (keys.has('ArrowRight') || keys.has('d')) dx += 1
  if (keys.has('ArrowUp') || keys.has('w')) dy -= 1
  if (keys.has('ArrowDown') || keys.has('s')) dy += 1
  if (pointer !== undefined && me !== undefined) {
    const mine = latest()?.players.get(me)
    if (mine !== undefined) {
      const ux = pointer.x - mine.x
      const uy = pointer.y - mine.y
      const length = Math.hypot(ux, uy)
      if (length > world.playerRadius) {
        dx = ux / length
        dy = uy / length
      }
    }
  }
  if (dx !== direction.dx || dy !== direction.dy) {
    direction.dx = dx
    direction.dy = dy
    sendInput()
  }
}

function latest() {
  return frames[frames.length - 1]
}

addEventListener('keydown', (event) => {
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key
  if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'w', 'a', 's', 'd'].includes(key)) return
  event.preventDefault()
  keys.add(key)
  updateDirection()
})
addEventListener('keyup', (event) => {
  keys.delete(event.key.length === 1 ? event.key.toLowerCase() : event.key)
  updateDirection()
})
addEventListener('blur', () => {
  keys.clear()
  updateDirection()
})

function toWorld(event) {
  const box = canvas.getBoundingClientRect()
  return {
    x: ((event.clientX - box.left) / box.width) * world.width,
    y: ((event.clientY - box.top) / box.height) * world.height,
  }
}
canvas.addEventListener('pointerdown', (event) => {
  canvas.setPointerCapture(event.pointerId)
  pointer = toWorld(event)
  updateDirection()
})
canvas.addEventListener('pointermove', (event) => {
  if (pointer === undefined) return
  pointer = toWorld(event)
  updateDirection()
})
for (const type of ['pointerup', 'pointercancel']) {
  canvas.addEventListener(type, () => {
    pointer = undefined
    updateDirection()
  })
}

function watch(channel) {
  if (arena?.channel === channel) return
  // Reconnected to another node: its arena, not the old one's (frames without history: no recovery).
  arena?.unsubscribe()
  frames.length = 0
  offset = Number.POSITIVE_INFINITY
  arena = client.channel(channel, { recover: false })
  arena.on('publication', showFrame)
}

function showFrame({ data }) {
  const frame = {
    tick: data.tick,
    at: data.at,
    tickMs: data.tickMs,
    star: data.star,
    players: new Map(data.players.map((p) => [p.id, p])),
  }
  offset = Math.min(offset, Date.now() - data.at)
  tickMs = data.tickMs
  frames.push(frame)
  if (frames.length > 30) frames.shift()
  $('tick').textContent = String(data.tick)
  if (frames.length >= 10) {
    const span = frames[frames.length - 1].at - frames[frames.length - 10].at
    $('rate').textContent = `${Math.round((9 * 1000) / span)} Hz`
  }
  renderScores(data.players)
}

function renderScores(players) {
  const list = $('scores')
  const sorted = [...players].sort((a, b) => b.score - a.score || a.nick.localeCompare(b.nick))
  list.replaceChildren(
    ...sorted.map((player) => {
      const item = document.createElement('li')
      item.dataset.id = player.id
      item.dataset.nick = player.nick
      item.dataset.x = String(player.x)
      item.dataset.y = String(player.y)
      if (player.rtt !== undefined) item.dataset.rtt = String(player.rtt)
      item.classList.toggle('me', player.id === me)
      const swatch = document.createElement('span')
      swatch.className = 'swatch'
      swatch.style.background = player.color
      const name = document.createElement('span')
      name.className = 'name'
      name.textContent = `${player.nick} · ${player.score}★`
      const time = document.createElement('span')
      time.className = 'rtt'
      time.textContent = player.rtt === undefined ? '–' : `${player.rtt} ms`
      item.append(swatch, name, time)
      return item
    }),
  )
}

/** Where each player was at `time` on the server's time line, between the two frames around it. */
function interpolate(time) {
  if (frames.length === 0) return undefined
  let before = frames[0]
  let after = frames[0]
  for (const frame of frames) {
    if (frame.at <= time) before = frame
    if (frame.at >= time) {
      after = frame
      break
    }
    after = frame
  }
  const span = after.at - before.at
  const t = span > 0 ? Math.min(1, Math.max(0, (time - before.at) / span)) : 1
  const players = []
  for (const [id, next] of after.players) {
    const previous = before.players.get(id) ?? next
    players.push({
      ...next,
      x: previous.x + (next.x - previous.x) * t,
      y: previous.y + (next.y - previous.y) * t,
    })
  }
  return { players, star: after.star }
}

function draw() {
  requestAnimationFrame(draw)
  // Two ticks behind the newest frame's time: there is almost always a frame on each side.
  const view = interpolate(Date.now() - offset - 2 * tickMs)
  context.clearRect(0, 0, canvas.width, canvas.height)
  context.strokeStyle = '#263048'
  context.lineWidth = 1
  for (let x = 50; x < world.width; x += 50) {
    context.beginPath()
    context.moveTo(x, 0)
    context.lineTo(x, world.height)
    context.stroke()
  }
  for (let y = 50; y < world.height; y += 50) {
    context.beginPath()
    context.moveTo(0, y)
    context.lineTo(world.width, y)
    context.stroke()
  }
  if (view === undefined) return
  context.fillStyle = '#ffd75e'
  context.beginPath()
  context.arc(view.star.x, view.star.y, world.starRadius, 0, Math.PI * 2)
  context.fill()
  // Labels keep a readable size on a small screen, where the arena is drawn scaled down.
  const scale = Math.min(2.5, canvas.width / Math.max(1, canvas.clientWidth))
  context.font = `${Math.round(13 * scale)}px system-ui, sans-serif`
  context.textAlign = 'center'
  for (const player of view.players) {
    context.fillStyle = player.color
    context.beginPath()
    context.arc(player.x, player.y, world.playerRadius, 0, Math.PI * 2)
    context.fill()
    if (player.id === me) {
      context.strokeStyle = '#ffffff'
      context.lineWidth = 3
      context.stroke()
    }
    context.fillStyle = '#e6ebf5'
    const label = `${player.nick}${player.rtt === undefined ? '' : ` ${player.rtt} ms`}`
    // Kept inside the arena, also for a player against a wall.
    const half = context.measureText(label).width / 2
    const x = Math.min(world.width - half - 2, Math.max(half + 2, player.x))
    context.fillText(label, x, Math.max(12 * scale, player.y - world.playerRadius - 6))
  }
}

client.on('state', showConnection)
client.on('connected', () => {
  showConnection()
  // Each connection is a new session: the server forgot the player, so the page joins again.
  join()
})
client.on('closed', ({ reason }) => {
  $('me').textContent = `connection refused: ${reason}`
})
setInterval(() => {
  if (Date.now() - lastSentAt >= KEEPALIVE_MS) sendInput()
}, KEEPALIVE_MS / 2)
showConnection()
client.connect()
requestAnimationFrame(draw)
