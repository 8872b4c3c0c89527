/**
 * Delivery receipts for the chat (issue 15, page 1: "sent / delivered" marks). A message is
 * *sent* when the server acknowledged its publish with an offset; it is *delivered* once another
 * member's page has shown it. Each page says so on `receipt:<room>`, a channel without history
 * (a receipt matters only to the pages there now): `{ upTo, epoch }` covers every message of
 * `chat:<room>` up to that offset in that epoch, so one receipt acknowledges a whole batch.
 */
import { ErrorCode, RealtimeError, type RealtimeSession } from '../realtime/index.js'
import type { DemoPage } from './server.js'

/** A receipt is `{ upTo, epoch }`; anything else is refused with 112 and the field. */
function checkReceipt(data: unknown): true {
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new RealtimeError(ErrorCode.InvalidData, 'a receipt is an object { upTo, epoch }', '')
  const { upTo, epoch, ...rest } = data as Record<string, unknown>
  if (!Number.isSafeInteger(upTo) || (upTo as number) < 1)
    throw new RealtimeError(ErrorCode.InvalidData, '"upTo" must be the offset of a message shown', 'upTo')
  if (typeof epoch !== 'string' || epoch === '' || epoch.length > 64)
    throw new RealtimeError(ErrorCode.InvalidData, '"epoch" must be the channel\'s epoch', 'epoch')
  const extra = Object.keys(rest)[0]
  if (extra !== undefined)
    throw new RealtimeError(ErrorCode.InvalidData, `a receipt has no "${extra}"`, extra)
  return true
}

const named = (session: RealtimeSession) => session.user !== ''

export const chatReceiptsPage: DemoPage = {
  name: 'chat receipts',
  channels: {
    'receipt:*': {
      subscribe: named,
      publish: (session, _channel, data) => named(session) && checkReceipt(data),
    },
  },
}
