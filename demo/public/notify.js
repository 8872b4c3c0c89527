// Push notifications: this page listens on notify:<user>; `POST /api/notify` publishes there.
import { RallyClient } from '/rally/client/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
let unread = 0

function showConnection(client) {
  document.body.dataset.connection = client.state
  document.body.dataset.transport = client.transport ?? ''
  $('state').textContent = client.state
  $('transport').textContent = client.transport ?? '–'
  document.querySelector('.status .dot').classList.toggle('online', client.state === 'connected')
}

function setUnread(count) {
  unread = count
  $('count').textContent = String(count)
  $('count').hidden = count === 0
}

/** The browser's own notification, when the user allowed them and the page is not in front. */
function desktopNotification({ title, body }) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return
  if (document.visibilityState === 'visible') return
  new Notification(title, { body })
}

function show(pub, isNew) {
  const { title, body, at } = pub.data
  const item = document.createElement('li')
  item.dataset.offset = String(pub.offset)
  const heading = document.createElement('strong')
  heading.textContent = title
  const text = document.createElement('div')
  text.textContent = body
  const time = document.createElement('small')
  time.className = 'notice'
  time.textContent = new Date(at).toLocaleString()
  item.append(heading, text, time)
  if (isNew) item.classList.add('unread')
  $('notifications').prepend(item)
  if (isNew) {
    setUnread(unread + 1)
    desktopNotification(pub.data)
  }
}

function start(user) {
  $('join').hidden = true
  $('inbox').hidden = false
  $('who').textContent = user
  $('curl').textContent =
    `curl -X POST -H "Authorization: Bearer $RALLY_NOTIFY_TOKEN" -H "Content-Type: application/json" -d '{"user":"${user}","title":"Hello"}' ${location.origin}/api/notify`
  const client = new RallyClient(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/rt`, {
    token: user,
  })
  window.rallyClient = client
  const inbox = client.channel(`notify:${user}`)
  const seen = new Set()
  client.on('state', () => showConnection(client))
  client.on('connected', () => showConnection(client))
  inbox.on('subscribed', async ({ recovered }) => {
    if (!recovered) {
      // The earlier ones, already read: shown, not counted.
      const { publications } = await inbox.history({ limit: 20 })
      for (const pub of publications) {
        if (seen.has(pub.offset)) continue
        seen.add(pub.offset)
        show(pub, false)
      }
    }
    document.body.dataset.subscribed = 'true'
  })
  inbox.on('publication', (pub) => {
    if (seen.has(pub.offset)) return
    seen.add(pub.offset)
    show(pub, true)
  })
  showConnection(client)
  client.connect()
}

setUnread(0)
$('bell').addEventListener('click', () => {
  setUnread(0)
  for (const item of document.querySelectorAll('#notifications .unread')) item.classList.remove('unread')
})
if ('Notification' in window && Notification.permission === 'default') {
  $('allow').hidden = false
  $('allow').addEventListener('click', async () => {
    await Notification.requestPermission()
    $('allow').hidden = true
  })
}
$('user').value = params.get('user') ?? localStorage.getItem('rally-nick') ?? ''
$('join').addEventListener('submit', (event) => {
  event.preventDefault()
  const user = $('user').value.trim()
  localStorage.setItem('rally-nick', user)
  const url = new URL(location.href)
  url.searchParams.set('user', user)
  history.replaceState(null, '', url)
  start(user)
})
if (params.has('user')) $('join').requestSubmit()
