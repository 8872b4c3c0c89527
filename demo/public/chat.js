// The chat on Rally's realtime layer: a room is the channel chat:<room> (history and presence on),
// typing indicators go through typing:<room> (no history: they are worth nothing later), and so
// do delivery receipts, on receipt:<room>: a page that has shown the room's messages up to an
// offset says so, and the authors of those messages mark them delivered. A message is "sent"
// when the server acknowledged its publish (with its offset), "delivered" once another member's
// page has shown it.

import { realtimeUrl, showConnection } from '/connection.js'
import { RallyClient } from '/rally/client/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const HISTORY_SHOWN = 100
const TYPING_SHOWN_MS = 3000
const TYPING_SENT_EVERY_MS = 1500
/** Receipts for messages shown close together go out as one. */
const RECEIPT_DELAY_MS = 150

function timeOf(at) {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
}

function start(nick, room) {
  const client = new RallyClient(realtimeUrl('/rt'), { token: nick })
  window.rallyClient = client
  const chat = client.channel(`chat:${room}`, { joinLeave: true })
  const typing = client.channel(`typing:${room}`, { recover: false })
  const receipts = client.channel(`receipt:${room}`, { recover: false })
  /** Message elements by offset: a publication seen twice (history + live) is shown once. */
  const shown = new Map()
  const members = new Map()
  const typists = new Map()

  $('join').hidden = true
  $('room-view').hidden = false
  $('room-title').textContent = `${room} — you are ${nick}`
  document.title = `${room} · Rally chat`

  function messageElement(author, text) {
    const element = document.createElement('div')
    element.className = 'message'
    const who = document.createElement('span')
    who.className = 'nick'
    who.textContent = author
    const body = document.createElement('span')
    body.className = 'text'
    body.textContent = text
    const mark = document.createElement('span')
    mark.className = 'mark'
    element.append(who, body, mark)
    return element
  }

  /** Puts `element` at its offset's place, so that the list stays in channel order. */
  function place(offset, element) {
    element.dataset.offset = String(offset)
    shown.set(offset, element)
    const messages = $('messages')
    const later = [...messages.children].find((child) => Number(child.dataset.offset) > offset)
    messages.insertBefore(element, later ?? messages.querySelector('.message:not([data-offset])'))
    messages.scrollTop = messages.scrollHeight
  }

  function markSent(element, offset, epoch) {
    element.classList.remove('pending')
    element.classList.add('sent')
    element.dataset.epoch = epoch
    element.querySelector('.mark').textContent = 'sent ✓'
    place(offset, element)
  }

  function showPublication(pub) {
    if (shown.has(pub.offset)) return
    const author = pub.info?.info?.nick ?? pub.info?.user ?? 'server'
    const element = messageElement(author, pub.data.text)
    if (pub.info !== undefined && (pub.info.client === client.clientId || mine.has(pub.info.client))) {
      markSent(element, pub.offset, pub.epoch)
      applyReceipts(element)
    } else {
      place(pub.offset, element)
      noteSeen(pub)
    }
  }

  // --- Delivery receipts -------------------------------------------------------------------
  /** This page's client ids (one per connection): its messages from before a reconnect are its own. */
  const mine = new Set()
  /** The furthest position shown of the others' messages, which this page's receipt reports. */
  let seen
  let receiptTimer
  /** Per epoch, the furthest offset each other member has shown, by nickname. */
  const readers = new Map()

  function noteSeen(pub) {
    if (seen !== undefined && seen.epoch === pub.epoch && seen.upTo >= pub.offset) return
    seen = { upTo: pub.offset, epoch: pub.epoch }
    sendReceiptSoon()
  }

  function sendReceiptSoon() {
    if (receiptTimer !== undefined || seen === undefined) return
    receiptTimer = setTimeout(() => {
      receiptTimer = undefined
      // Offline, the receipt waits: the subscribed event below sends the latest one.
      if (client.state !== 'connected') return
      receipts.publish({ upTo: seen.upTo, epoch: seen.epoch }).catch(() => {})
    }, RECEIPT_DELAY_MS)
  }

  function applyReceipts(element) {
    const offset = Number(element.dataset.offset)
    const names = [...(readers.get(element.dataset.epoch) ?? new Map())]
      .filter(([, upTo]) => upTo >= offset)
      .map(([name]) => name)
      .sort()
    if (names.length === 0) return
    element.classList.add('delivered')
    element.dataset.deliveredTo = names.join(',')
    const mark = element.querySelector('.mark')
    mark.textContent = 'delivered ✓✓'
    mark.title = `seen by ${names.join(', ')}`
  }

  receipts.on('publication', (pub) => {
    if (pub.info === undefined || mine.has(pub.info.client) || pub.info.client === client.clientId) return
    const name = pub.info.info?.nick ?? pub.info.user
    const { upTo, epoch } = pub.data
    if (!readers.has(epoch)) readers.set(epoch, new Map())
    const byName = readers.get(epoch)
    if ((byName.get(name) ?? 0) >= upTo) return
    byName.set(name, upTo)
    for (const element of $('messages').querySelectorAll('.message.sent')) applyReceipts(element)
  })
  // Back after a reconnect: say again how far this page has read (receipts have no history).
  receipts.on('subscribed', sendReceiptSoon)

  async function reloadHistory() {
    const { publications } = await chat.history({ limit: HISTORY_SHOWN })
    for (const pub of publications) showPublication(pub)
  }

  function renderMembers() {
    const list = $('members')
    list.replaceChildren()
    const nicks = [...members.values()].sort()
    for (const name of nicks) {
      const item = document.createElement('li')
      item.textContent = name
      list.append(item)
    }
    $('member-count').textContent = String(nicks.length)
  }

  function notice(text) {
    const element = document.createElement('div')
    element.className = 'notice'
    element.textContent = `${text} · ${timeOf(Date.now())}`
    $('messages').append(element)
  }

  client.on('state', () => showConnection(client, [$('members')]))
  client.on('connected', () => {
    mine.add(client.clientId)
    showConnection(client, [$('members')])
  })
  // A refusal (a nickname the server does not accept): said on the page, the client stops.
  client.on('closed', ({ reason }) => notice(`Connection refused: ${reason}`))
  let disconnections = 0
  client.on('disconnected', ({ reason }) => {
    document.body.dataset.disconnections = String(++disconnections)
    notice(`Disconnected (${reason}), reconnecting…`)
  })

  chat.on('subscribed', async ({ recovered, wasRecovering }) => {
    if (wasRecovering && !recovered) {
      // The gap is not in the server's history (trimmed, or the server restarted): say so and
      // start again from the latest messages rather than show a conversation with a hole.
      $('recovery-notice').hidden = false
      for (const element of shown.values()) element.remove()
      shown.clear()
    }
    if (wasRecovering && recovered) notice('Reconnected: nothing missed')
    if (!recovered) await reloadHistory()
    const list = await chat.presence()
    members.clear()
    for (const member of list) members.set(member.client, member.info?.nick ?? member.user)
    renderMembers()
    document.body.dataset.subscribed = 'true'
  })
  chat.on('subscribing', () => {
    document.body.dataset.subscribed = 'false'
  })
  chat.on('publication', showPublication)
  chat.on('join', (member) => {
    // Someone (back) in the room may have missed this page's receipts: they are sent again.
    sendReceiptSoon()
    members.set(member.client, member.info?.nick ?? member.user)
    renderMembers()
    notice(`${member.info?.nick ?? member.user} joined`)
  })
  chat.on('leave', (member) => {
    if (!members.delete(member.client)) return
    renderMembers()
    notice(`${member.info?.nick ?? member.user} left`)
  })
  chat.on('error', ({ error }) => notice(`Room refused: ${error.message}`))

  typing.on('publication', (pub) => {
    if (pub.info === undefined || pub.info.client === client.clientId) return
    const name = pub.info.info?.nick ?? pub.info.user
    clearTimeout(typists.get(name))
    typists.set(
      name,
      setTimeout(() => {
        typists.delete(name)
        renderTyping()
      }, TYPING_SHOWN_MS),
    )
    renderTyping()
  })
  function renderTyping() {
    const names = [...typists.keys()]
    $('typing').textContent =
      names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`
  }

  let lastTypingSent = 0
  $('text').addEventListener('input', () => {
    const now = Date.now()
    if (now - lastTypingSent < TYPING_SENT_EVERY_MS || client.state !== 'connected') return
    lastTypingSent = now
    // Fire and forget: a lost typing indicator is not worth a retry or an error.
    typing.publish({ typing: true }).catch(() => {})
  })

  $('say').addEventListener('submit', async (event) => {
    event.preventDefault()
    const text = $('text').value.trim()
    if (text === '') return
    $('text').value = ''
    const element = messageElement(nick, text)
    element.classList.add('pending')
    element.querySelector('.mark').textContent =
      client.state === 'connected' ? 'sending…' : 'queued (offline)'
    $('messages').append(element)
    try {
      // Acknowledged: the reply carries the publication's offset in the channel.
      const { offset, epoch } = await chat.publish({ text })
      shown.get(offset)?.remove()
      markSent(element, offset, epoch)
      applyReceipts(element)
    } catch (error) {
      element.classList.replace('pending', 'failed')
      element.querySelector('.mark').textContent = `not sent: ${error.message}`
    }
  })

  showConnection(client, [$('members')])
  client.connect()
}

$('nick').value = params.get('nick') ?? localStorage.getItem('rally-nick') ?? ''
$('room').value = params.get('room') ?? 'lobby'
$('join').addEventListener('submit', (event) => {
  event.preventDefault()
  const nick = $('nick').value.trim()
  const room = $('room').value.trim()
  localStorage.setItem('rally-nick', nick)
  const url = new URL(location.href)
  url.searchParams.set('nick', nick)
  url.searchParams.set('room', room)
  history.replaceState(null, '', url)
  start(nick, room)
})
// A link with both (?nick=…&room=…) joins at once.
if (params.has('nick') && params.has('room')) $('join').requestSubmit()
