// A WebSocket that reconnects by itself, with exponential backoff and jitter, so the pages
// survive a server restart. A browser cannot see WebSocket pings: a dead server is noticed when
// the TCP connection fails, or here when nothing arrives for `silenceMs` (the dashboard gets a
// sample every second; the chat sends nothing on its own, so it relies on TCP).
export function connect(path, { onOpen, onMessage, onStatus, silenceMs } = {}) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`
  let socket
  let attempt = 0
  let silenceTimer
  let retryTimer
  let stopped = false

  function arm() {
    if (!silenceMs) return
    clearTimeout(silenceTimer)
    silenceTimer = setTimeout(() => socket?.close(), silenceMs)
  }

  function open() {
    if (stopped) return
    onStatus?.('connecting')
    socket = new WebSocket(url)
    socket.onopen = () => {
      attempt = 0
      onStatus?.('online')
      arm()
      onOpen?.(socket)
    }
    socket.onmessage = (event) => {
      arm()
      onMessage?.(JSON.parse(event.data), socket)
    }
    socket.onclose = () => {
      clearTimeout(silenceTimer)
      if (stopped) return
      onStatus?.('offline')
      const delay = Math.min(10_000, 250 * 2 ** attempt++) * (0.5 + Math.random() / 2)
      retryTimer = setTimeout(open, delay)
    }
  }
  open()
  return {
    send(message) {
      if (socket?.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(message))
        return true
      }
      return false
    },
    stop() {
      // A retry may be pending (the socket closed, the next attempt not made yet): cancel it, or
      // a stopped page would connect again.
      stopped = true
      clearTimeout(retryTimer)
      clearTimeout(silenceTimer)
      socket?.close()
    },
  }
}

export function showStatus(state) {
  const dot = document.querySelector('.status .dot')
  const text = document.querySelector('.status .text')
  dot.classList.toggle('online', state === 'online')
  text.textContent =
    state === 'online' ? 'connected' : state === 'connecting' ? 'connecting…' : 'reconnecting…'
  document.body.dataset.connection = state
}
