/**
 * The demo's chat on the realtime layer in Chromium: two pages see each other in the room's
 * presence list and talk (each message marked sent once its publish is acknowledged, delivered
 * once the other page has shown it — also when that page joined later and found it in the
 * history), a late joiner gets the history, typing shows on the other page, a page whose connection the server
 * cuts while the browser is offline gets every missed message back on reconnection, and a page
 * whose server restarted (new epoch: history gone) says so and reloads the latest messages.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { BrowserContext, Page } from 'playwright-core'
import type { RallyError } from '../../src/realtime/client/index.js'
import { newRallyClient, nextEvent, rejectionOf } from '../realtime/client-helpers.js'
import {
  assertNoHorizontalScroll,
  collectErrors,
  demoInChromium,
  PHONE,
  startTestDemo,
} from './browser-support.js'

describe('live chat (realtime layer) in Chromium', { timeout: 120_000 }, () => {
  const setup = demoInChromium()
  const contexts: BrowserContext[] = []

  /** A page in its own browser context (its own offline switch), joined to `room` as `nick`. */
  async function join(
    nick: string,
    room: string,
    context?: BrowserContext,
  ): Promise<{ page: Page; context: BrowserContext; errors: string[] }> {
    if (context === undefined) {
      context = await setup.browser.newContext({ viewport: PHONE })
      contexts.push(context)
    }
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${setup.demo.port}/chat.html?nick=${nick}&room=${room}`)
    await page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 10_000,
    })
    return { page, context, errors }
  }

  async function say(page: Page, text: string): Promise<void> {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }

  async function members(page: Page): Promise<string[]> {
    return (await page.locator('#members li').allTextContents()).sort()
  }

  it('two pages: presence shows both, a message appears on the other page and is marked sent, then delivered; a late joiner gets the history', async () => {
    const alice = await join('alice', 'r1')
    // Alone in the room: sent (acknowledged with its offset), delivered to nobody yet.
    await say(alice.page, 'anyone here?')
    await alice.page.waitForSelector('.message.sent:has-text("anyone here?") .mark:has-text("sent ✓")', {
      timeout: 5000,
    })
    assert.equal(await alice.page.locator('.message.delivered').count(), 0)
    const bob = await join('bob', 'r1')
    // Bob's page shows it from the history and says so: Alice's message becomes delivered.
    await alice.page.waitForSelector('.message.delivered[data-delivered-to="bob"]:has-text("anyone here?")', {
      timeout: 5000,
    })
    assert.equal(await alice.page.locator('#transport').textContent(), 'websocket')
    await alice.page.waitForSelector('#members li:nth-child(2)', { timeout: 5000 })
    assert.deepEqual(await members(alice.page), ['alice', 'bob'])
    assert.deepEqual(await members(bob.page), ['alice', 'bob'])
    await alice.page.waitForSelector('text=bob joined', { timeout: 5000 })

    // Typing goes through the no-history channel and shows on the other page.
    await bob.page.type('#text', 'hel')
    await alice.page.waitForSelector('#typing:has-text("bob is typing")', { timeout: 5000 })
    await say(bob.page, 'hello from bob')
    await say(alice.page, 'hello from alice')
    await bob.page.waitForSelector('.message:has-text("hello from alice")', { timeout: 5000 })
    await alice.page.waitForSelector('.message:has-text("hello from bob")', { timeout: 5000 })
    // Each author's message is marked delivered, with who saw it, once the other page showed it.
    await alice.page.waitForSelector(
      '.message.sent.delivered[data-delivered-to="bob"]:has-text("hello from alice") .mark:has-text("delivered")',
      { timeout: 5000 },
    )
    await bob.page.waitForSelector(
      '.message.sent.delivered[data-delivered-to="alice"]:has-text("hello from bob")',
      {
        timeout: 5000,
      },
    )
    assert.equal(await alice.page.locator('.message:has-text("hello from bob") .mark').textContent(), '')

    const carol = await join('carol', 'r1')
    await carol.page.waitForSelector('.message:has-text("hello from alice")', { timeout: 5000 })
    const texts = await carol.page.locator('#messages .message .text').allTextContents()
    assert.deepEqual(texts, ['anyone here?', 'hello from bob', 'hello from alice'])
    await alice.page.waitForSelector('#members li:nth-child(3)', { timeout: 5000 })
    await alice.page.waitForSelector('.message[data-delivered-to="bob,carol"]:has-text("hello from alice")', {
      timeout: 5000,
    })
    await carol.context.close()
    await alice.page.waitForSelector('text=carol left', { timeout: 5000 })
    assert.deepEqual(await members(alice.page), ['alice', 'bob'])

    await assertNoHorizontalScroll(alice.page)
    assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], [])
    await alice.context.close()
    await bob.context.close()
  })

  it('refuses a receipt that is not { upTo, epoch } (112, naming the field)', async () => {
    const client = newRallyClient(`ws://127.0.0.1:${setup.demo.port}/rt`, { token: 'node-reader' })
    const receipts = client.channel('receipt:r0', { recover: false })
    client.connect()
    await nextEvent(receipts, 'subscribed')
    for (const [receipt, field] of [
      [{ upTo: 0, epoch: 'e' }, 'upTo'],
      [{ upTo: 1.5, epoch: 'e' }, 'upTo'],
      [{ upTo: 3 }, 'epoch'],
      [{ upTo: 3, epoch: 'e', seen: true }, 'seen'],
      [[3, 'e'], ''],
    ] as const) {
      const error = (await rejectionOf(receipts.publish(receipt))) as RallyError
      assert.equal(error.code, 112, JSON.stringify(receipt))
      assert.equal(error.field, field)
    }
    await receipts.publish({ upTo: 3, epoch: 'e' })
    client.close()
  })

  it('a nickname the server refuses is said on the page, and the client stops', async () => {
    const context = await setup.browser.newContext({ viewport: PHONE })
    contexts.push(context)
    const page = await context.newPage()
    await page.goto(
      `http://127.0.0.1:${setup.demo.port}/chat.html?nick=${encodeURIComponent('two words')}&room=r0`,
    )
    await page.waitForSelector('body[data-connection="closed"]', { timeout: 10_000 })
    await page.waitForSelector('.notice:has-text("Connection refused")', { timeout: 5000 })
    assert.match((await page.locator('.notice').first().textContent()) ?? '', /nickname/)
    await context.close()
  })

  it('a page whose connection the server cut gets the messages it missed when it reconnects', async () => {
    // Dave's WebSockets pass through a gate the test holds: open, the page talks to the server
    // (the route connects through); shut, each attempt is closed at once, so that the messages
    // below are published while the page is certainly away.
    let gateOpen = true
    const daveContext = await setup.browser.newContext({ viewport: PHONE })
    contexts.push(daveContext)
    await daveContext.routeWebSocket(/\/rt$/, (route) => {
      if (gateOpen) route.connectToServer()
      else route.close({ code: 1013, reason: 'held by the test' })
    })
    const dave = await join('dave', 'r2', daveContext)
    const erin = await join('erin', 'r2')
    await say(erin.page, 'before the cut')
    await dave.page.waitForSelector('.message:has-text("before the cut")', { timeout: 5000 })

    gateOpen = false
    const client = (await dave.page.evaluate('window.rallyClient.clientId')) as string
    assert.ok(setup.demo.live.realtime.clients.has(client))
    setup.demo.live.realtime.disconnect(client, 4008, 'cut by the test')
    // The cut, then at least one attempt refused by the gate.
    await dave.page.waitForFunction('Number(document.body.dataset.disconnections) >= 2', undefined, {
      timeout: 10_000,
    })
    for (const n of [1, 2, 3]) await say(erin.page, `missed ${n}`)
    await erin.page.waitForSelector('.message.sent:has-text("missed 3")', { timeout: 5000 })
    const whileAway = await dave.page.locator('#messages .message .text').allTextContents()
    assert.deepEqual(whileAway, ['before the cut'])
    // Sent while away: queued by the client, said so on the page, delivered after the reconnect.
    await say(dave.page, 'written while away')
    await dave.page.waitForSelector(
      '.message.pending:has-text("written while away") .mark:has-text("queued")',
      {
        timeout: 5000,
      },
    )

    gateOpen = true
    // The browser's online event cuts the client's backoff short.
    await dave.page.evaluate("window.dispatchEvent(new Event('online'))")
    await dave.page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 15_000,
    })
    await dave.page.waitForSelector('.message:has-text("missed 3")', { timeout: 5000 })
    await dave.page.waitForSelector('.message.sent:has-text("written while away")', { timeout: 10_000 })
    await erin.page.waitForSelector('.message:has-text("written while away")', { timeout: 5000 })
    const texts = await dave.page.locator('#messages .message .text').allTextContents()
    assert.deepEqual(texts, ['before the cut', 'missed 1', 'missed 2', 'missed 3', 'written while away'])
    await dave.page.waitForSelector('text=Reconnected: nothing missed', { timeout: 5000 })
    // What Dave recovered counts as delivered to him, and his queued message as delivered to Erin.
    await erin.page.waitForSelector('.message.delivered[data-delivered-to="dave"]:has-text("missed 3")', {
      timeout: 5000,
    })
    await dave.page.waitForSelector(
      '.message.delivered[data-delivered-to="erin"]:has-text("written while away")',
      {
        timeout: 5000,
      },
    )
    assert.equal(await dave.page.locator('#recovery-notice').isVisible(), false)
    assert.deepEqual([...dave.errors, ...erin.errors], [])
    await dave.context.close()
    await erin.context.close()
  })

  it('after a server restart (history gone) the page says so and reloads the latest messages', async () => {
    const frank = await join('frank', 'r3')
    await say(frank.page, 'before the restart')
    await frank.page.waitForSelector('.message.sent:has-text("before the restart")', { timeout: 5000 })
    const port = setup.demo.port
    await setup.demo.close()
    await frank.page.waitForSelector('body:not([data-connection="connected"])', { timeout: 5000 })
    setup.demo = await startTestDemo({ port })
    await setup.demo.live.realtime.publish('chat:r3', { text: 'from the new server' })
    await frank.page.waitForSelector('#recovery-notice:visible', { timeout: 15_000 })
    await frank.page.waitForSelector('.message:has-text("from the new server")', { timeout: 5000 })
    const texts = await frank.page.locator('#messages .message .text').allTextContents()
    assert.deepEqual(texts, ['from the new server'])
    await frank.context.close()
  })
})
