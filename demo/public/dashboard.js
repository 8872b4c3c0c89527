import { connect, showStatus } from './reconnecting.js'

const samples = []
const LIMIT = 120
const canvas = document.getElementById('chart')
const context = canvas.getContext('2d')
const css = getComputedStyle(document.documentElement)

connect('/ws/dashboard', {
  onStatus: showStatus,
  // A sample comes every second; 5 s of silence means the server is gone.
  silenceMs: 5000,
  onMessage(message) {
    if (message.type === 'history') {
      samples.splice(0, samples.length, ...message.samples)
    } else if (message.type === 'sample') {
      samples.push(message.sample)
      if (samples.length > LIMIT) samples.shift()
    }
    render()
  },
})

function render() {
  const last = samples.at(-1)
  if (!last) return
  setText('connections', last.connections)
  setText('messagesIn', rate(last.messagesInPerSecond))
  setText('messagesOut', rate(last.messagesOutPerSecond))
  setText('bytes', `${bytes(last.bytesInPerSecond)} / ${bytes(last.bytesOutPerSecond)}`)
  setText('lag', `${last.eventLoopLagMs.toFixed(1)} ms`)
  setText('rss', bytes(last.rssBytes))
  document.body.dataset.samples = String(samples.length)
  draw()
}

function draw() {
  const ratio = window.devicePixelRatio || 1
  const width = canvas.clientWidth
  const height = canvas.clientHeight
  canvas.width = width * ratio
  canvas.height = height * ratio
  context.setTransform(ratio, 0, 0, ratio, 0, 0)
  context.clearRect(0, 0, width, height)
  const pad = 28
  const series = [
    { key: 'messagesInPerSecond', color: css.getPropertyValue('--accent') },
    { key: 'messagesOutPerSecond', color: css.getPropertyValue('--accent2') },
    { key: 'connections', color: css.getPropertyValue('--ok') },
  ]
  const max = Math.max(1, ...samples.flatMap((s) => series.map((line) => s[line.key])))
  context.strokeStyle = css.getPropertyValue('--line')
  context.fillStyle = css.getPropertyValue('--muted')
  context.font = '11px system-ui'
  for (let i = 0; i <= 4; i++) {
    const y = pad + ((height - 2 * pad) * i) / 4
    context.beginPath()
    context.moveTo(pad, y)
    context.lineTo(width - 8, y)
    context.stroke()
    context.fillText(rate((max * (4 - i)) / 4), 2, y - 3)
  }
  for (const line of series) {
    context.strokeStyle = line.color
    context.lineWidth = 2
    context.beginPath()
    samples.forEach((sample, index) => {
      const x = pad + ((width - pad - 8) * index) / Math.max(1, LIMIT - 1)
      const y = height - pad - ((height - 2 * pad) * sample[line.key]) / max
      if (index === 0) context.moveTo(x, y)
      else context.lineTo(x, y)
    })
    context.stroke()
  }
}

function setText(id, value) {
  document.getElementById(id).textContent = String(value)
}

function rate(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(value < 10 ? 1 : 0)
}

function bytes(value) {
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}

window.addEventListener('resize', draw)
