/**
 * WebRTC signaling in Chromium: two pages meet in a Rally channel, exchange offer, answer and ICE
 * candidates through it, open an RTCDataChannel and talk over it. The server's counters prove
 * the talk did not pass through it: its signaling counter does not move, and the bytes its
 * sockets read and write while the pages exchange 30 KB stay a small fraction of that. Then the
 * server stops, and the pages still talk.
 *
 * No STUN or TURN server: host candidates on loopback. Chromium may hide host addresses behind
 * mDNS names (.local) that need resolving; the flag below makes host candidates carry the address
 * itself, so the test does not depend on mDNS (this headless Chromium also connected without it).
 */
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import type { Demo } from '../../src/demo/server.js'
import type { RallyError } from '../../src/realtime/client/index.js'
import { closeAllClients, newRallyClient, nextEvent, rejectionOf } from '../realtime/client-helpers.js'
import {
  assertNoHorizontalScroll,
  bounded,
  collectErrors,
  launchChromium,
  PHONE,
  startTestDemo,
} from './browser-support.js'

const MESSAGE = 'x'.repeat(1000)
const COUNT = 30

interface Counts {
  signalSent: number
  signalAcked: number
  signalReceived: number
  directSent: number
  directReceived: number
}

describe('WebRTC signaling through Rally in Chromium', { timeout: 120_000 }, () => {
  let browser: Browser
  let demo: Demo
  let demoClosed = false
  const sockets = new Set<Socket>()

  before(async () => {
    demo = await startTestDemo()
    demo.server.on('connection', (socket: Socket) => sockets.add(socket))
    browser = await launchChromium(['--disable-features=WebRtcHideLocalIpsWithMdns'])
  })

  after(async () => {
    closeAllClients()
    await bounded(browser?.close(), 10_000)
    if (!demoClosed) await bounded(demo?.close(), 10_000)
  })

  async function open(
    peer: string,
    room: string,
  ): Promise<{ page: Page; context: BrowserContext; errors: string[] }> {
    const context = await browser.newContext({ viewport: PHONE })
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${demo.port}/webrtc.html?peer=${peer}&room=${room}`)
    await page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 10_000,
    })
    return { page, context, errors }
  }

  function counts(page: Page): Promise<Counts> {
    return page.evaluate('window.webrtc.counts') as Promise<Counts>
  }

  async function relayed(
    room: string,
  ): Promise<{ offer: number; answer: number; candidate: number; total: number }> {
    const response = await fetch(`http://127.0.0.1:${demo.port}/api/signal/stats?room=${room}`)
    assert.equal(response.status, 200)
    return (
      (await response.json()) as {
        relayed: { offer: number; answer: number; candidate: number; total: number }
      }
    ).relayed
  }

  function socketBytes(): { read: number; written: number } {
    let read = 0
    let written = 0
    for (const socket of sockets) {
      read += socket.bytesRead
      written += socket.bytesWritten
    }
    return { read, written }
  }

  async function send(page: Page, text: string): Promise<void> {
    await page.fill('#text', text)
    await page.press('#text', 'Enter')
  }

  it('answers 400 to a bad room name on the counters endpoint', async () => {
    const response = await fetch(
      `http://127.0.0.1:${demo.port}/api/signal/stats?room=${encodeURIComponent('a b')}`,
    )
    assert.equal(response.status, 400)
    assert.match(((await response.json()) as { error: string }).error, /room/)
  })

  it('refuses anonymous peers (103) and signals that are not an offer, answer or candidate (112, naming the field)', async () => {
    const url = `ws://127.0.0.1:${demo.port}/rt`
    const anonymous = newRallyClient(url)
    const refused = nextEvent(anonymous.channel('signal:r0'), 'error')
    anonymous.connect()
    assert.equal((await refused).error.code, 103)

    const peer = newRallyClient(url, { token: 'node-peer' })
    const room = peer.channel('signal:r0')
    peer.connect()
    await nextEvent(room, 'subscribed')
    for (const [signal, field] of [
      [{ to: 'bo', type: 'offer' }, 'sdp'],
      [{ to: 'bo', type: 'hello', sdp: 'v=0' }, 'type'],
      [{ to: 'two words', type: 'answer', sdp: 'v=0' }, 'to'],
      [{ to: 'bo', type: 'answer', sdp: 'v=0', extra: 1 }, 'extra'],
      [{ to: 'bo', type: 'candidate', candidate: { candidate: 'x', evil: true } }, 'candidate'],
      [{ to: 'bo', type: 'offer', sdp: 'v'.repeat(17 * 1024) }, 'sdp'],
    ] as const) {
      const error = (await rejectionOf(room.publish(signal))) as RallyError
      assert.equal(error.code, 112, JSON.stringify(signal).slice(0, 80))
      assert.equal(error.field, field)
    }
    assert.equal((await relayed('r0')).total, 0)
    await room.publish({ to: 'bo', type: 'candidate', candidate: null })
    assert.deepEqual(await relayed('r0'), { offer: 0, answer: 0, candidate: 1, total: 1, bytes: 47 })
    peer.close()
  })

  it('two pages signal through the server, then talk peer to peer: the server sees none of it', async () => {
    const amy = await open('amy', 'r1')
    const bo = await open('bo', 'r1')
    for (const { page } of [amy, bo]) await page.waitForSelector('body[data-open="1"]', { timeout: 20_000 })

    // Every signaling message either page sent is acknowledged (ICE gathering ends with a null
    // candidate, sent like the others): from here on, the server has nothing left to relay.
    for (const { page } of [amy, bo])
      await page.waitForFunction(
        `(() => { const c = window.webrtc.counts; return c.signalAcked === c.signalSent && window.webrtc.gatheringDone })()`,
        undefined,
        { timeout: 20_000 },
      )
    const before = await relayed('r1')
    const [amyCounts, boCounts] = [await counts(amy.page), await counts(bo.page)]
    assert.equal(before.total, amyCounts.signalSent + boCounts.signalSent)
    assert.equal(before.offer, 1)
    assert.equal(before.answer, 1)
    assert.ok(before.candidate >= 2, `${before.candidate} candidates relayed`)
    assert.ok((await amy.page.locator('#log li[data-route="server"]').count()) >= 2)
    const bytesBefore = socketBytes()

    for (let i = 0; i < COUNT; i++) await send(amy.page, `${i} ${MESSAGE}`)
    await bo.page.waitForSelector(`body[data-direct-received="${COUNT}"]`, { timeout: 20_000 })
    await send(bo.page, 'thanks, all here')
    await amy.page.waitForSelector('#log li[data-route="direct"]:has-text("bo: thanks, all here")', {
      timeout: 10_000,
    })

    const after = await relayed('r1')
    assert.deepEqual(after, before, 'no signaling message during the talk')
    const bytesAfter = socketBytes()
    const payload = COUNT * MESSAGE.length
    // The server's sockets carried at most the counters request above and a heartbeat or two:
    // far less than one tenth of what the pages exchanged.
    assert.ok(
      bytesAfter.read - bytesBefore.read < payload / 10,
      `server read ${bytesAfter.read - bytesBefore.read} B`,
    )
    assert.ok(
      bytesAfter.written - bytesBefore.written < payload / 10,
      `server wrote ${bytesAfter.written - bytesBefore.written} B`,
    )
    assert.equal((await counts(bo.page)).directReceived, COUNT)
    assert.equal(await bo.page.locator('#log li[data-route="direct"]:has-text("amy: 29 x")').count(), 1)

    // With the server gone, the data channel still works: it never needed the server.
    await demo.close()
    demoClosed = true
    await amy.page.waitForSelector('body:not([data-connection="connected"])', { timeout: 10_000 })
    await send(amy.page, 'still here without the server')
    await bo.page.waitForSelector(
      '#log li[data-route="direct"]:has-text("amy: still here without the server")',
      {
        timeout: 10_000,
      },
    )

    await assertNoHorizontalScroll(amy.page)
    // The pages' failed reconnection attempts to the stopped server are the browser's console
    // errors about the WebSocket, not the page's: only those are allowed.
    const unexpected = [...amy.errors, ...bo.errors].filter(
      (text) => !/WebSocket connection to .* failed/.test(text),
    )
    assert.deepEqual(unexpected, [])
    await amy.context.close()
    await bo.context.close()
  })
})
