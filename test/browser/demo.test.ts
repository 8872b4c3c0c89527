/**
 * The demo app in a real browser (Debian's Chromium driven by playwright-core): two pages chat
 * with each other, and after a server restart the pages reconnect by themselves (the dashboard
 * has its own test, dashboard.test.ts).
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { type Demo, startDemo } from '../../src/demo/server.js'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Resolves when `promise` does, or after `ms` — so that a wedged browser cannot hang the run. */
function bounded(promise: Promise<unknown> | undefined, ms: number): Promise<unknown> {
  return Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms).unref())])
}

describe('demo app in Chromium', { timeout: 120_000 }, () => {
  let browser: Browser
  let demo: Demo

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: the test set-up (scripts/ensure-system-deps.mjs) installs it`,
    )
    demo = await startDemo({ port: 0, host: '127.0.0.1', statsInterval: 250 })
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  })

  after(async () => {
    await bounded(browser?.close(), 10_000)
    await bounded(demo?.close(), 10_000)
  })

  async function joinChat(nick: string): Promise<Page> {
    const page = await browser.newPage()
    // The chat runs on the realtime layer: a link with both joins at once.
    await page.goto(`http://127.0.0.1:${demo.port}/chat.html?nick=${nick}&room=e2e`)
    await page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', { timeout: 5000 })
    return page
  }

  async function say(page: Page, text: string): Promise<void> {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }

  it('two pages chat with each other, and a late joiner gets the history', async () => {
    const alice = await joinChat('alice')
    const bob = await joinChat('bob')
    await alice.waitForSelector('text=bob joined', { timeout: 5000 })
    await say(alice, 'hello from alice')
    await bob.waitForSelector('text=hello from alice', { timeout: 5000 })
    await say(bob, 'hello from bob')
    await alice.waitForSelector('text=hello from bob', { timeout: 5000 })
    const members = await alice.locator('#members li').allTextContents()
    assert.deepEqual(members.sort(), ['alice', 'bob'])

    const carol = await joinChat('carol')
    // History for the late joiner, in order.
    const texts = await carol.locator('.message').allTextContents()
    assert.ok(texts[0]?.includes('hello from alice'), texts.join(' | '))
    assert.ok(texts[1]?.includes('hello from bob'), texts.join(' | '))
    await carol.close()
    await bob.waitForSelector('text=carol left', { timeout: 5000 })
    await alice.close()
    await bob.close()
  })

  it('pages reconnect by themselves when the server restarts', async () => {
    const alice = await joinChat('erin')

    const port = demo.port
    await demo.close()
    await alice.waitForSelector('body:not([data-connection="connected"])', { timeout: 5000 })

    demo = await startDemo({ port, host: '127.0.0.1', statsInterval: 250 })
    await alice.waitForSelector('body[data-connection="connected"]', { timeout: 15000 })
    // The chat page rejoined its room on reconnect: a message goes through the new server.
    const frank = await joinChat('frank')
    await say(alice, 'back after the restart')
    await frank.waitForSelector('text=back after the restart', { timeout: 5000 })
    await alice.close()
    await frank.close()
  })
})
