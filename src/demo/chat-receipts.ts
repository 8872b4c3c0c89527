/**
 * Delivery receipts for the chat (issue 15, page 1: "sent / delivered" marks). A message is
 * *sent* when the server acknowledged its publish with an offset; it is *delivered* once another
 * member's page has shown it. Each page says so on `receipt:<room>`, a channel without history
 * (a receipt matters only to the pages there now): `{ upTo, epoch }` covers every message of
 * `chat:<room>` up to that offset in that epoch, so one receipt acknowledges a whole batch.
 */
import type { RealtimeSession } from '../realtime/index.js'
import type { DemoPage } from './server.js'

function isReceipt(data: unknown): boolean {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return false
  const { upTo, epoch } = data as Record<string, unknown>
  return (
    Number.isSafeInteger(upTo) &&
    (upTo as number) > 0 &&
    typeof epoch === 'string' &&
    epoch.length > 0 &&
    epoch.length <= 64 &&
    Object.keys(data).length === 2
  )
}

const named = (session: RealtimeSession) => session.user !== ''

export const chatReceiptsPage: DemoPage = {
  name: 'chat receipts',
  channels: {
    'receipt:*': {
      subscribe: named,
      publish: (session, _channel, data) => named(session) && isReceipt(data),
    },
  },
}
