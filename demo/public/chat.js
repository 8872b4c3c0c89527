import { connect, showStatus } from './reconnecting.js'

const joinForm = document.getElementById('join')
const roomView = document.getElementById('room-view')
const messages = document.getElementById('messages')
const members = document.getElementById('members')
const sayForm = document.getElementById('say')
const text = document.getElementById('text')
let joined // { room, nick }: rejoined after every reconnect

const params = new URLSearchParams(location.search)
if (params.get('nick')) document.getElementById('nick').value = params.get('nick')
if (params.get('room')) document.getElementById('room').value = params.get('room')

const chat = connect('/ws/chat', {
  onStatus: showStatus,
  onOpen() {
    if (joined) chat.send({ type: 'join', ...joined })
  },
  onMessage(message) {
    if (message.type === 'welcome') {
      messages.replaceChildren()
      for (const past of message.history) addMessage(past)
      addNotice(`You joined ${message.room} as ${message.nick}`)
      showMembers(message.members)
    } else if (message.type === 'message') {
      addMessage(message)
    } else if (message.type === 'joined') {
      addNotice(`${message.nick} joined`)
      showMembers(message.members)
    } else if (message.type === 'left') {
      addNotice(`${message.nick} left`)
      showMembers(message.members)
    } else if (message.type === 'error') {
      addNotice(`Error: ${message.message}`)
    }
  },
})

joinForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const form = new FormData(joinForm)
  joined = { room: String(form.get('room')).trim(), nick: String(form.get('nick')).trim() }
  chat.send({ type: 'join', ...joined })
  joinForm.hidden = true
  roomView.hidden = false
  document.getElementById('room-title').textContent = `# ${joined.room}`
  text.focus()
})

sayForm.addEventListener('submit', (event) => {
  event.preventDefault()
  if (text.value.trim() && chat.send({ type: 'say', text: text.value })) text.value = ''
})

function addMessage(message) {
  const line = document.createElement('div')
  line.className = 'message'
  const nick = document.createElement('span')
  nick.className = 'nick'
  nick.textContent = message.nick
  const body = document.createElement('span')
  body.textContent = message.text
  const time = document.createElement('span')
  time.className = 'time'
  time.textContent = new Date(message.at).toLocaleTimeString()
  line.append(nick, body, time)
  append(line)
}

function addNotice(content) {
  const line = document.createElement('div')
  line.className = 'notice'
  line.textContent = content
  append(line)
}

function append(node) {
  const atBottom = messages.scrollTop + messages.clientHeight >= messages.scrollHeight - 4
  messages.append(node)
  if (atBottom) messages.scrollTop = messages.scrollHeight
}

function showMembers(list) {
  members.replaceChildren(
    ...list.map((nick) => {
      const item = document.createElement('li')
      item.textContent = nick
      return item
    }),
  )
}
