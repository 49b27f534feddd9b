// The real @segment/analytics-node, pointed at eventmap serve: node node-sdk.mjs HOST WRITE_KEY USER_ID
// Prints one JSON line: the events the SDK says it delivered, every HTTP exchange, and every error.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, userId] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxRetries: 0, maxEventsInBatch: 10, flushInterval: 200,
                                  httpRequestTimeout: 10000 })
const delivered = []
const errors = []
const exchanges = []
analytics.on('http_request', (r) => exchanges.push({ url: r.url, method: r.method, auth: Object.keys(r.headers).some((h) => h.toLowerCase() === 'authorization') }))
analytics.on('http_response', (r) => exchanges.push({ url: r.url, status: r.status }))
analytics.on('error', (e) => errors.push(String(e.reason ?? e.code)))
const done = (err, ctx) => {
  if (err) errors.push(String(err.reason ?? err.message ?? err))
  else delivered.push({ type: ctx.event.type, messageId: ctx.event.messageId })
}

analytics.identify({ userId, traits: { email: `${userId}@example.com`, plan: 'pro' } }, done)
analytics.track({ userId, event: 'Order Completed', properties: { order_id: 'o-1', revenue: 42.5 } }, done)
for (let n = 0; n < 25; n++) analytics.track({ userId, event: 'Clicked', properties: { n } }, done)
await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ delivered, errors, exchanges }))
