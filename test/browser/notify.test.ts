/**
 * Push notifications in Chromium: a page listens on notify:<user>; POST /api/notify with the
 * bearer token reaches its bell (count and list), and only its own user's; the endpoint answers
 * 401 without the token or with a wrong one and 400 to a body that is not JSON or lacks fields.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { type Demo, startDemo } from '../../src/demo/server.js'
import {
  assertChromium,
  assertNoHorizontalScroll,
  bounded,
  CHROMIUM,
  CHROMIUM_ARGS,
  collectErrors,
  PHONE,
} from './browser-support.js'

const TOKEN = 'notify-test-token'

describe('push notifications in Chromium', { timeout: 60_000 }, () => {
  let browser: Browser
  let demo: Demo

  before(async () => {
    assertChromium()
    demo = await startDemo({ port: 0, host: '127.0.0.1', statsInterval: 60_000, notifyToken: TOKEN })
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  })

  after(async () => {
    await bounded(browser?.close(), 10_000)
    await bounded(demo?.close(), 10_000)
  })

  function notify(body: string, authorization?: string): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (authorization !== undefined) headers.authorization = authorization
    return fetch(`http://127.0.0.1:${demo.port}/api/notify`, { method: 'POST', headers, body })
  }

  it('refuses requests without the bearer token (401) and bodies that are not a notification (400)', async () => {
    const valid = JSON.stringify({ user: 'zoe', title: 'hi' })
    const missing = await notify(valid)
    assert.equal(missing.status, 401)
    assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer/)
    assert.equal((await notify(valid, 'Bearer wrong-token')).status, 401)
    assert.equal((await notify(valid, `Basic ${TOKEN}`)).status, 401)
    const notJson = await notify('{"user": ', `Bearer ${TOKEN}`)
    assert.equal(notJson.status, 400)
    assert.match(((await notJson.json()) as { error: string }).error, /not JSON/)
    assert.equal((await notify('[1]', `Bearer ${TOKEN}`)).status, 400)
    assert.equal((await notify(JSON.stringify({ user: 'zoe' }), `Bearer ${TOKEN}`)).status, 400)
    assert.equal(
      (await notify(JSON.stringify({ user: 'no spaces', title: 'x' }), `Bearer ${TOKEN}`)).status,
      400,
    )
    const tooBig = await notify(
      JSON.stringify({ user: 'zoe', title: 'x', body: 'y'.repeat(9000) }),
      `Bearer ${TOKEN}`,
    )
    assert.equal(tooBig.status, 413)
    // Nothing of the above was published.
    assert.equal((await demo.live.realtime.history('notify:zoe')).publications.length, 0)
  })

  it('the home page links the realtime pages and fits a phone', async () => {
    const context = await browser.newContext({ viewport: PHONE })
    const home = await context.newPage()
    const errors = collectErrors(home)
    await home.goto(`http://127.0.0.1:${demo.port}/index.html`)
    assert.equal(await home.locator('main a[href="/chat.html"]').count(), 1)
    assert.equal(await home.locator('main a[href="/notify.html"]').count(), 1)
    await assertNoHorizontalScroll(home)
    assert.deepEqual(errors, [])
    await context.close()
  })

  it("uses the browser's Notification API when notifications are allowed and the page is in the background", async () => {
    const context = await browser.newContext({ viewport: PHONE })
    await context.grantPermissions(['notifications'], { origin: `http://127.0.0.1:${demo.port}` })
    // Records what the page shows instead of asking the desktop, and puts the page in the
    // background (a headless page is always visible).
    await context.addInitScript(`(() => {
      const Real = window.Notification
      window.shownNotifications = []
      window.Notification = class {
        static get permission() { return Real.permission }
        static requestPermission() { return Real.requestPermission() }
        constructor(title, options) { window.shownNotifications.push({ title, body: options?.body }) }
      }
      Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' })
    })()`)
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${demo.port}/notify.html?user=ugo`)
    await page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 10_000,
    })
    assert.equal(await page.evaluate('Notification.permission'), 'granted')
    const sent = await notify(
      JSON.stringify({ user: 'ugo', title: 'Deploy done', body: 'v2 is live' }),
      `Bearer ${TOKEN}`,
    )
    assert.equal(sent.status, 202)
    await page.waitForSelector('#notifications li:has-text("Deploy done")', { timeout: 5000 })
    assert.deepEqual(await page.evaluate('window.shownNotifications'), [
      { title: 'Deploy done', body: 'v2 is live' },
    ])
    assert.deepEqual(errors, [])
    await context.close()
  })

  it('POST /api/notify reaches the bell of that user only', async () => {
    const context = await browser.newContext({ viewport: PHONE })
    const zoe = await context.newPage()
    const errors = collectErrors(zoe)
    await zoe.goto(`http://127.0.0.1:${demo.port}/notify.html?user=zoe`)
    await zoe.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 10_000,
    })
    assert.equal(await zoe.locator('#count').isVisible(), false)

    const other = await notify(JSON.stringify({ user: 'yann', title: 'for yann' }), `Bearer ${TOKEN}`)
    assert.equal(other.status, 202)
    const sent = await notify(
      JSON.stringify({ user: 'zoe', title: 'Build finished', body: 'all green' }),
      `Bearer ${TOKEN}`,
    )
    assert.equal(sent.status, 202)
    assert.deepEqual(await sent.json(), { channel: 'notify:zoe', offset: 1 })

    await zoe.waitForSelector('#notifications li:has-text("Build finished")', { timeout: 5000 })
    assert.equal(await zoe.locator('#count').textContent(), '1')
    assert.deepEqual(await zoe.locator('#notifications li strong').allTextContents(), ['Build finished'])
    assert.match((await zoe.locator('#notifications li').first().textContent()) ?? '', /all green/)
    await assertNoHorizontalScroll(zoe)

    // Opening the bell marks them read.
    await zoe.click('#bell')
    assert.equal(await zoe.locator('#count').isVisible(), false)
    assert.equal(await zoe.locator('#notifications li.unread').count(), 0)
    assert.deepEqual(errors, [])
    await context.close()
  })
})
