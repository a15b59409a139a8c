import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'

/** Counts the bytes the socket has taken. */
export interface ByteCounter {
  bytes: number
}

/**
 * Pipe `body` into `res`, counting each chunk in its write callback, i.e.
 * when the socket has taken it (DESIGN §2: an aborted download counts what
 * was sent, not what was queued). Never buffers more than the socket's
 * high-water mark: when `write` returns false the source is not read until
 * 'drain' (backpressure both ways, since the async iterator pauses the
 * source).
 *
 * Resolves `true` when the whole body was written and `res` finished;
 * `false` when either side went away (the other side is then torn down:
 * client gone → `body` destroyed; origin gone → `res` destroyed, so the
 * client sees a truncated response rather than a silently short one).
 */
export async function streamBody (body: Readable, res: ServerResponse, counter: ByteCounter): Promise<boolean> {
  let clientGone = false
  const onClose = (): void => {
    if (!res.writableFinished) {
      clientGone = true
      body.destroy()
    }
  }
  res.once('close', onClose)
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (clientGone || res.destroyed) return false
      const size = chunk.length
      const ok = res.write(chunk, (err) => {
        if (err == null) counter.bytes += size
      })
      if (!ok && !(await drained(res))) return false
    }
    if (clientGone || res.destroyed) return false
    res.end()
    // 'finish' fires once the last chunk was handed to the socket, after the
    // write callbacks of every earlier chunk; a premature close rejects.
    await finished(res)
    return !clientGone
  } catch {
    // The origin stream failed (or was destroyed because the client left).
    if (!res.destroyed) res.destroy()
    return false
  } finally {
    res.off('close', onClose)
  }
}

/**
 * Write a body that is whole in memory in one call, counted in its write
 * callback as {@link streamBody} counts chunks. Resolves as streamBody does.
 */
export async function sendBuffer (body: Buffer, res: ServerResponse, counter: ByteCounter): Promise<boolean> {
  if (res.destroyed) return false
  const size = body.length
  res.write(body, (err) => {
    if (err == null) counter.bytes += size
  })
  res.end()
  try {
    await finished(res)
    return true
  } catch {
    return false
  }
}

/** Wait for 'drain'; false if the response closes first. */
function drained (res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = (): void => {
      res.off('close', onClose)
      resolve(true)
    }
    const onClose = (): void => {
      res.off('drain', onDrain)
      resolve(false)
    }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}
