#!/usr/bin/env node
// Takes the README's screenshots of the demo in headless Chromium (Debian's /usr/bin/chromium):
// two chat pages talking, and the dashboard under a little traffic. Usage: npm run build first,
// then node scripts/screenshots.mjs (writes docs/images/*.png).
import { mkdirSync } from 'node:fs'
import { chromium } from 'playwright-core'
import { startDemo } from '../dist/demo/server.js'

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const demo = await startDemo({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${demo.port}`
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
})
try {
  mkdirSync('docs/images', { recursive: true })
  const alice = await browser.newPage({ viewport: { width: 1100, height: 620 } })
  const bob = await browser.newPage({ viewport: { width: 1100, height: 620 } })
  // A link with a nickname and a room joins at once.
  await alice.goto(`${base}/chat.html?nick=alice&room=lobby`)
  await alice.waitForSelector('body[data-subscribed="true"]')
  await bob.goto(`${base}/chat.html?nick=bob&room=lobby`)
  await bob.waitForSelector('body[data-subscribed="true"]')
  for (const [page, text] of [
    [alice, 'Hi Bob! Rally works over one TCP connection.'],
    [bob, 'Hello Alice — and it reconnects by itself.'],
    [alice, 'Try restarting the server: the pages reconnect.'],
  ]) {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
    await page.waitForTimeout(150)
  }
  await alice.screenshot({ path: 'docs/images/demo-chat.png' })
  const dashboard = await browser.newPage({ viewport: { width: 1100, height: 700 } })
  await dashboard.goto(`${base}/dashboard.html`)
  for (let i = 0; i < 6; i++) {
    for (let j = 0; j < 20 * (i + 1); j++) {
      await bob.fill('#text', `message ${i}.${j}`)
      await bob.press('#text', 'Enter')
    }
    await dashboard.waitForTimeout(1000)
  }
  await dashboard.screenshot({ path: 'docs/images/demo-dashboard.png' })
  console.log('wrote docs/images/demo-chat.png and docs/images/demo-dashboard.png')
} finally {
  await browser.close()
  await demo.close()
}
