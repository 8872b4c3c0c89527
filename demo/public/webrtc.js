// WebRTC with Rally as the signaling server. Pages meet in signal:<room>: each pair is found
// through presence, the peer whose name sorts higher makes the offer (so two pages never offer
// to each other at once), offers, answers and ICE candidates go through the channel addressed
// to one peer, and the conversation itself goes over an RTCDataChannel, peer to peer.

import { randomHex, realtimeUrl, showConnection as showState } from '/connection.js'
import { RallyClient } from '/rally/client/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const room = /^[\w-]{1,32}$/.test(params.get('room') ?? '') ? params.get('room') : 'lobby'
const me = params.get('peer') ?? `peer-${randomHex(3)}`
const MAX_PEERS = 6

const client = new RallyClient(realtimeUrl('/rt'), { token: me })
const signals = client.channel(`signal:${room}`, { recover: false, joinLeave: true })
/** Peer connections by the other page's name. */
const peers = new Map()
const counts = { signalSent: 0, signalAcked: 0, signalReceived: 0, directSent: 0, directReceived: 0 }

window.webrtc = {
  client,
  peers,
  counts,
  me,
  /** Every peer connection has gathered its ICE candidates (and sent the end marker). */
  get gatheringDone() {
    return peers.size > 0 && [...peers.values()].every((peer) => peer.gathered)
  },
}
$('title').textContent = `Room ${room} — you are ${me}`

function showConnection() {
  showState(client, [$('counts')])
}

function log(route, text) {
  const item = document.createElement('li')
  const tag = document.createElement('span')
  tag.className = `route ${route}`
  tag.textContent = route === 'server' ? 'via server' : 'direct'
  const what = document.createElement('span')
  what.className = 'what'
  what.textContent = text
  item.append(tag, what)
  item.dataset.route = route
  $('log').append(item)
  $('log').scrollTop = $('log').scrollHeight
}

function renderCounts() {
  $('signal-sent').textContent = String(counts.signalSent)
  $('signal-received').textContent = String(counts.signalReceived)
  $('direct-sent').textContent = String(counts.directSent)
  $('direct-received').textContent = String(counts.directReceived)
  const open = [...peers.values()].filter((peer) => peer.channel?.readyState === 'open').length
  document.body.dataset.open = String(open)
  document.body.dataset.directReceived = String(counts.directReceived)
  const list = $('peers')
  list.replaceChildren(
    ...[...peers.entries()].map(([name, peer]) => {
      const item = document.createElement('li')
      item.textContent = `${name}: ${peer.connection.connectionState}${peer.channel?.readyState === 'open' ? ', data channel open' : ''}`
      return item
    }),
  )
  if (list.childElementCount === 0) list.textContent = 'nobody yet'
}

async function refreshRelayed() {
  try {
    const response = await fetch(`/api/signal/stats?room=${room}`)
    const { relayed } = await response.json()
    $('relayed').textContent = `${relayed.total} (${relayed.bytes} B)`
    document.body.dataset.relayed = String(relayed.total)
  } catch {
    // Shown dimmed (stale) with the connection state; the next refresh will tell.
  }
}

async function signal(to, message) {
  counts.signalSent++
  renderCounts()
  const what =
    message.type === 'candidate'
      ? `ICE candidate to ${to}${message.candidate === null ? ' (end)' : ''}`
      : `${message.type} to ${to}`
  const queued = client.state !== 'connected'
  log('server', queued ? `${what} — queued (offline)` : what)
  try {
    // Acknowledged by the server with the publication's offset (or queued while offline).
    await signals.publish({ to, ...message })
    counts.signalAcked++
  } catch (error) {
    log('server', `${what} not sent: ${error.message}`)
  }
  refreshRelayed()
}

function attachChannel(name, peer, channel) {
  peer.channel = channel
  channel.onopen = () => {
    log('direct', `data channel to ${name} open`)
    renderCounts()
  }
  channel.onclose = () => {
    log('direct', `data channel to ${name} closed`)
    renderCounts()
  }
  channel.onmessage = (event) => {
    counts.directReceived++
    log('direct', `${name}: ${event.data}`)
    renderCounts()
  }
}

function peerFor(name) {
  let peer = peers.get(name)
  if (peer !== undefined) return peer
  // No STUN or TURN: host candidates are enough on one machine or one network.
  const connection = new RTCPeerConnection({ iceServers: [] })
  peer = { connection, channel: undefined, pending: [], gathered: false }
  peers.set(name, peer)
  connection.onicecandidate = (event) => {
    if (event.candidate === null) peer.gathered = true
    signal(name, { type: 'candidate', candidate: event.candidate?.toJSON() ?? null })
  }
  connection.onconnectionstatechange = () => {
    renderCounts()
    if (connection.connectionState === 'failed' || connection.connectionState === 'closed') {
      log('direct', `connection to ${name} ${connection.connectionState}`)
      peers.delete(name)
      renderCounts()
    }
  }
  connection.ondatachannel = (event) => attachChannel(name, peer, event.channel)
  renderCounts()
  return peer
}

/** A pair found: the higher name offers, the other waits for its offer. */
async function meet(name) {
  if (name === me || peers.has(name) || peers.size >= MAX_PEERS || me < name) return
  const peer = peerFor(name)
  attachChannel(name, peer, peer.connection.createDataChannel('chat'))
  await peer.connection.setLocalDescription(await peer.connection.createOffer())
  signal(name, { type: 'offer', sdp: peer.connection.localDescription.sdp })
}

async function handleSignal(from, data) {
  counts.signalReceived++
  renderCounts()
  log(
    'server',
    data.type === 'candidate'
      ? `ICE candidate from ${from}${data.candidate === null ? ' (end)' : ''}`
      : `${data.type} from ${from}`,
  )
  if (data.type === 'offer') {
    if (!peers.has(from) && peers.size >= MAX_PEERS) return
    const peer = peerFor(from)
    await peer.connection.setRemoteDescription({ type: 'offer', sdp: data.sdp })
    for (const candidate of peer.pending.splice(0)) await peer.connection.addIceCandidate(candidate)
    await peer.connection.setLocalDescription(await peer.connection.createAnswer())
    signal(from, { type: 'answer', sdp: peer.connection.localDescription.sdp })
  } else if (data.type === 'answer') {
    const peer = peers.get(from)
    if (peer === undefined) return
    await peer.connection.setRemoteDescription({ type: 'answer', sdp: data.sdp })
    for (const candidate of peer.pending.splice(0)) await peer.connection.addIceCandidate(candidate)
  } else if (data.type === 'candidate') {
    const peer = peers.get(from)
    if (peer === undefined) return
    const candidate = data.candidate ?? undefined
    // Candidates may come before the description they belong to: held until it is set.
    if (peer.connection.remoteDescription === null) peer.pending.push(candidate)
    else await peer.connection.addIceCandidate(candidate)
  }
}

signals.on('subscribed', async () => {
  document.body.dataset.subscribed = 'true'
  for (const member of await signals.presence()) meet(member.user)
})
signals.on('join', (member) => meet(member.user))
signals.on('leave', (member) => {
  if (peers.has(member.user))
    log('server', `${member.user} left the room (a direct link outlives its signaling)`)
})
signals.on('publication', (pub) => {
  // The sender's name is the server's word (the publication's info), not a field it wrote.
  const from = pub.info?.user
  if (from === undefined || from === me || pub.data.to !== me) return
  handleSignal(from, pub.data).catch((error) => log('server', `signaling failed: ${error.message}`))
})
signals.on('error', ({ error }) => log('server', `room refused: ${error.message}`))

$('say').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = $('text').value.trim()
  if (text === '') return
  const open = [...peers.entries()].filter(([, peer]) => peer.channel?.readyState === 'open')
  if (open.length === 0) {
    log('direct', `not sent (no open data channel yet): ${text}`)
    return
  }
  $('text').value = ''
  for (const [, peer] of open) peer.channel.send(text)
  counts.directSent++
  log('direct', `you → ${open.map(([name]) => name).join(', ')}: ${text}`)
  renderCounts()
})

client.on('state', showConnection)
client.on('connected', showConnection)
client.on('closed', ({ reason }) => log('server', `connection refused: ${reason}`))
showConnection()
renderCounts()
refreshRelayed()
client.connect()
