#!/usr/bin/env node
// Retakes the README's screenshots of the demo's pages in headless Chromium (Debian's
// /usr/bin/chromium), on desktop and phone viewports, with a little traffic so that each page
// has something to show. Runs the demo from the sources:
//   node --import tsx scripts/screenshots.mjs
// and writes docs/images/demo-*.png. Screenshots are at one device pixel per CSS pixel, so the
// PNGs stay small.
import { mkdirSync } from 'node:fs'
import { chromium } from 'playwright-core'
import { startDemo } from '../src/demo/server.ts'

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Host candidates with real addresses, not mDNS names: the WebRTC page connects on loopback.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]
const DESKTOP = { width: 1100, height: 640 }
const PHONE = { width: 390, height: 844 }
const OUT = 'docs/images'

const demo = await startDemo({ port: 0, host: '127.0.0.1', notifyToken: 'screenshots' })
const base = `http://127.0.0.1:${demo.port}`
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
})
const written = []

async function open(path, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 })
  const page = await context.newPage()
  await page.goto(`${base}${path}`)
  return page
}

async function shoot(page, name) {
  const path = `${OUT}/demo-${name}.png`
  await page.screenshot({ path })
  written.push(path)
}

async function say(page, text) {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

try {
  mkdirSync(OUT, { recursive: true })

  // Chat: two members talking; the phone is Bob's view of the same room.
  const alice = await open('/chat.html?nick=alice&room=lobby')
  await alice.waitForSelector('body[data-subscribed="true"]')
  const bob = await open('/chat.html?nick=bob&room=lobby', PHONE)
  await bob.waitForSelector('body[data-subscribed="true"]')
  await say(alice, 'Hi Bob! This room is a Rally channel with history and presence.')
  await bob.waitForSelector('.message:has-text("Hi Bob")')
  await say(bob, 'Hello Alice — your messages get a sent mark, then delivered.')
  await alice.waitForSelector('.message.delivered:has-text("Hi Bob")')
  await say(alice, 'Restart the server: nothing is lost.')
  await bob.waitForSelector('.message:has-text("Restart the server")')
  await alice.waitForSelector('.message.delivered:has-text("Restart the server")')
  await bob.type('#text', 'Trying it')
  await alice.waitForSelector('#typing:has-text("bob is typing")')
  await shoot(alice, 'chat')
  await shoot(bob, 'chat-phone')

  // Dashboard: a few seconds of chat traffic drawn on its charts.
  const dashboard = await open('/dashboard.html')
  for (let second = 0; second < 8; second++) {
    // Below the per-connection publish rate (20 a second), which would refuse the rest.
    for (let i = 0; i < 2 * (second + 1); i++) await say(alice, `message ${second}.${i}`)
    await dashboard.waitForTimeout(1000)
  }
  await shoot(dashboard, 'dashboard')

  // Game: three players, two of them moving.
  const players = []
  for (const nick of ['ann', 'ben', 'cy']) {
    const page = await open(`/game.html?nick=${nick}`, nick === 'cy' ? PHONE : DESKTOP)
    await page.waitForSelector('body[data-joined]')
    players.push(page)
  }
  await players[0].keyboard.down('ArrowRight')
  await players[1].keyboard.down('ArrowDown')
  await players[0].waitForTimeout(900)
  await players[0].keyboard.up('ArrowRight')
  await players[1].keyboard.up('ArrowDown')
  await players[0].waitForFunction('document.querySelectorAll("#scores li[data-rtt]").length === 3')
  await shoot(players[0], 'game')
  await shoot(players[2], 'game-phone')

  // WebRTC: two peers, signaled through the server, talking directly.
  const amy = await open('/webrtc.html?peer=amy&room=demo')
  const bo = await open('/webrtc.html?peer=bo&room=demo')
  await amy.waitForSelector('body[data-open="1"]')
  await bo.waitForSelector('body[data-open="1"]')
  await say(bo, 'Hi Amy, this goes over the data channel.')
  await amy.waitForSelector('#log li:has-text("Hi Amy")')
  await say(amy, 'And the server never sees it.')
  await bo.waitForSelector('#log li:has-text("never sees it")')
  await shoot(amy, 'webrtc')

  // The alternatives: enough messages for every lane to have its figures.
  const compare = await open('/alternatives.html')
  const comparePhone = await open('/alternatives.html', PHONE)
  for (const page of [compare, comparePhone])
    await page.waitForFunction(
      '[...document.querySelectorAll("[data-lane]")].every((lane) => lane.dataset.measured === "true" && Number(lane.dataset.received) >= 10)',
      undefined,
      { timeout: 60_000 },
    )
  await shoot(compare, 'alternatives')
  await shoot(comparePhone, 'alternatives-phone')
  const figures = await compare.evaluate(() =>
    [...document.querySelectorAll('[data-lane]')].map(
      (lane) =>
        `${lane.dataset.lane}: ${[...lane.querySelectorAll('dd')].map((dd) => `${dd.dataset.figure} ${dd.textContent}`).join(', ')}`,
    ),
  )
  console.log(figures.join('\n'))
  console.log(`wrote ${written.join(', ')}`)
} finally {
  await browser.close()
  await demo.close()
}
