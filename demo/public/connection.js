// What the realtime pages share: the header's connection line (state and transport as text, the
// dot, both on <body> as data-connection and data-transport for styles and tests, and the
// page's figures dimmed while they are stale), the realtime URL on this page's origin, and
// random ids.

/** Shows `client`'s state; `stale` are the elements dimmed while it is not connected. */
export function showConnection(client, stale = []) {
  const state = client.state
  const connected = state === 'connected'
  document.body.dataset.connection = state
  document.body.dataset.transport = client.transport ?? ''
  document.getElementById('state').textContent = state
  document.getElementById('transport').textContent = client.transport ?? '–'
  document.querySelector('.status .dot').classList.toggle('online', connected)
  for (const element of stale) element.classList.toggle('stale', !connected)
  return connected
}

/** ws(s)://host/path on this page's origin: wss when the page came over https. */
export function realtimeUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`
}

/** `bytes` random bytes as hex. */
export function randomHex(bytes) {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('')
}
