/**
 * The worker thread behind `SqliteFlushThread`: a connection of its
 * own to the store's file, through which each flush runs as the store's own
 * transaction (src/store/sqlite-store.ts), off the server's event loop.
 * Started by sqlite-flush-client.ts; never imported by anything else.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads'
import { threadError } from './sqlite-flush-client.ts'
import type { FlushReply, FlushRequest, FlushThreadData } from './sqlite-flush-client.ts'
import { SqliteStore } from './sqlite-store.ts'

if (isMainThread || parentPort === null) throw new Error('sqlite-flush-thread runs only as a worker thread')
const port = parentPort
const { path, policy } = workerData as FlushThreadData
const store = new SqliteStore(path, policy, { flushThread: false })

// One flush at a time, in the order asked: a flush waiting out another
// process's lock must not be overtaken, and only the one in progress can
// have committed when the thread fails (sqlite-flush-client.ts).
let queue = Promise.resolve()
port.on('message', (message: FlushRequest | 'close') => {
  if (message === 'close') {
    queue = queue.then(async () => { await store.close() }).finally(() => { port.close() })
    return
  }
  queue = queue.then(async () => {
    let reply: FlushReply
    try {
      reply = { id: message.id, result: await store.flushMarked(message.deltas, message.cursor, message.token) }
    } catch (err) {
      reply = { id: message.id, error: threadError(err) }
    }
    port.postMessage(reply)
  })
})
port.postMessage('ready')
