import type { IncomingMessage, ServerResponse } from 'node:http'
import { once } from 'node:events'
import {
  BadRequestError, BadSignatureError, OriginBodyTooLargeError, OriginError, PlaylistTooLargeError, StreammeterError, TooManyTransfersError,
  UrlExpiredError
} from '../../errors.ts'
import type { FileType } from '../../meter/index.ts'
import type { ClientIpResolver } from '../access/client-ip.ts'
import type { CorsPolicy } from './cors.ts'
import { sendError } from '../error-reply.ts'
import { forwardedClient } from '../origin/forwarding.ts'
import { fileTypeOf } from '../origin/media-types.ts'
import type { MeteringInput } from '../metering/metering-input.ts'
import type { ServerMetrics } from '../admin/metrics.ts'
import { BufferBody } from '../origin/buffer-body.ts'
import type { ForwardedHeaders, Origin, OriginResponse } from '../origin/origin.ts'
import { isPlaylistPath, rewritePlaylistSliced } from './playlist-rewriter.ts'
import { parseMediaPath, splitTarget } from './request-path.ts'
import { sessionIdOf } from '../access/session-id.ts'
import type { TransferRegistry } from './transfers.ts'
import type { TransfersPerIp } from './transfers-per-ip.ts'
import { checkSignedRequest, directoryOf, inScope, signedQuery } from '../access/url-signer.ts'
import type { UnsignedChildLog } from './unsigned-children.ts'

/** Longest accepted `uid`. */
const MAX_UID_LENGTH = 256
/** Status recorded in metrics for a request whose client left before the answer (nginx's 499). */
const CLIENT_CLOSED = 499

/** What the media handler needs. */
export interface MediaContext {
  origin: Origin
  /** Turns transfers into traffic events; undefined when metering is off. */
  metering: MeteringInput | undefined
  signingSecret: string | undefined
  ips: ClientIpResolver
  cors: CorsPolicy
  transfers: TransferRegistry
  /** `MAX_TRANSFERS_PER_IP`: requests in flight per client IP. */
  perIp: TransfersPerIp
  /** `PLAYLIST_MAX_BYTES`: the largest origin playlist rewritten; a larger one is a 502. */
  playlistMaxBytes: number
  /** `PUBLIC_HOSTS`, lower-case: absolute playlist URIs on them are signed (never judged by `Host`). */
  publicHosts: ReadonlySet<string>
  /** Where rewriting says, once per playlist, what it left without a token. */
  unsignedChildren: UnsignedChildLog
  metrics: ServerMetrics
  now: () => number
}

/** Who is asking, once the URL checked out. */
interface Identity {
  path: string
  uid: string | undefined
  expires: number | undefined
  /**
   * The directory (`/t/`) under which rewriting this request's playlist may
   * sign children: the `scope` its token was signed for, else the directory
   * of the signed path itself; undefined when nothing is signed.
   */
  scope: string | undefined
  /** The request's query string as received, without the `?` (`''` when none): passed to an HTTP origin. */
  query: string
  sessionId: string | undefined
  ip: string
  fileType: FileType
}

/**
 * GET/HEAD of a media file (docs/access.md#requests): check the URL, fetch from the origin,
 * stream to the client counting bytes in write callbacks, record one traffic
 * event when the response closes. Works on the raw request/response: the
 * body is written by hand so that every byte is counted as the socket takes it.
 */
export async function serveMedia (req: IncomingMessage, res: ServerResponse, ctx: MediaContext): Promise<void> {
  const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
  const started = ctx.now()
  let fileType: FileType = 'default'
  let status = 500
  let bytes = 0
  // The client leaving before the origin answered aborts the fetch. Not an
  // AbortController: one with a listener is a measurable share of a small
  // response's CPU (docs/performance.md#why-the-code-is-shaped-this-way).
  let clientGone = false
  let abortFetch: ((reason: Error) => void) | undefined
  let answer: OriginResponse | undefined
  let counted: string | undefined // the IP this request is counted under in ctx.perIp
  try {
    const who = identify(req, ctx)
    fileType = who.fileType
    if (!ctx.perIp.acquire(who.ip)) {
      ctx.metrics.countLimitHit('max_transfers_per_ip')
      throw new TooManyTransfersError(ctx.perIp.limit)
    }
    counted = who.ip
    const playlist = who.uid !== undefined && isPlaylistPath(who.path)
    const onClose = (): void => {
      if (res.writableFinished) return
      clientGone = true
      abortFetch?.(new Error('the client went away'))
    }
    res.once('close', onClose)
    try {
      answer = await ctx.origin.fetch({
        path: who.path,
        // A rewritten playlist's length is only known after rewriting, so a
        // HEAD of one is answered from a whole GET (its body is not sent).
        method: playlist ? 'GET' : method,
        headers: forwardedHeaders(req),
        query: who.query,
        client: forwardedClient(req, ctx.ips),
        whole: playlist,
        onAbortable: (abort) => { abortFetch = abort }
      })
    } finally {
      res.off('close', onClose)
    }
    if (res.destroyed) {
      status = CLIENT_CLOSED
      answer.body?.destroy()
      return
    }
    if (playlist && answer.status === 200) {
      answer = await rewritten(answer, who, req, ctx)
    }
    status = answer.status
    bytes = await send(res, answer, who, req, ctx)
  } catch (err) {
    // A body nobody consumed would hold its origin connection (or file)
    // open: a paused origin socket has no body timer. Releasing one already
    // sent or read is a no-op.
    answer?.body?.destroy()
    if (clientGone) {
      status = CLIENT_CLOSED // the client left before the origin answered: nothing to send
      return
    }
    const e = err instanceof StreammeterError ? err : undefined
    status = e?.statusCode ?? 500
    if (!res.headersSent) {
      ctx.cors.apply(req, res)
      sendError(res, err)
    } else if (!res.destroyed) {
      res.destroy()
    }
  } finally {
    if (counted !== undefined) ctx.perIp.release(counted)
    ctx.metrics.observeRequest(method, status, fileType, bytes, ctx.now() - started)
  }
}

function identify (req: IncomingMessage, ctx: MediaContext): Identity {
  const { rawPath, rawQuery } = splitTarget(req.url ?? '/')
  const path = parseMediaPath(rawPath)
  const query = new URLSearchParams(rawQuery)
  const uid = nonEmpty(query.get('uid'))
  if (uid !== undefined && uid.length > MAX_UID_LENGTH) throw new BadRequestError(`uid longer than ${MAX_UID_LENGTH} characters`)
  const expiresRaw = nonEmpty(query.get('expires'))
  let expires: number | undefined
  let scope: string | undefined
  if (ctx.signingSecret !== undefined) {
    const scoped = nonEmpty(query.get('scope'))
    const verdict = checkSignedRequest({
      secret: ctx.signingSecret,
      uid,
      path,
      expires: expiresRaw,
      token: nonEmpty(query.get('token')),
      scope: scoped,
      now: Math.floor(ctx.now() / 1000)
    })
    if (verdict === 'bad') throw new BadSignatureError()
    if (verdict === 'expired') throw new UrlExpiredError()
    expires = Number(expiresRaw)
    scope = scoped ?? directoryOf(path)
  } else if (expiresRaw !== undefined && /^\d{1,12}$/.test(expiresRaw)) {
    expires = Number(expiresRaw)
  }
  return {
    path,
    uid,
    expires,
    scope,
    query: rawQuery,
    sessionId: sessionIdOf(req.headers, nonEmpty(query.get('sid'))),
    ip: ctx.ips.resolve(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for']),
    fileType: fileTypeOf(path)
  }
}

function nonEmpty (v: string | null): string | undefined {
  return v === null || v === '' ? undefined : v
}

function forwardedHeaders (req: IncomingMessage): ForwardedHeaders {
  const h = req.headers
  return {
    range: one(h.range),
    'if-range': one(h['if-range']),
    'if-none-match': one(h['if-none-match']),
    'if-modified-since': one(h['if-modified-since']),
    'if-match': one(h['if-match']),
    'if-unmodified-since': one(h['if-unmodified-since']),
    'user-agent': one(h['user-agent'])
  }
}

function one (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

/**
 * Read the whole playlist (at most `PLAYLIST_MAX_BYTES`), rewrite its URIs
 * in slices that let other requests run, answer 200 in full with the new
 * length. A HEAD gets the length without the body being built.
 */
async function rewritten (answer: OriginResponse, who: Identity, req: IncomingMessage, ctx: MediaContext): Promise<OriginResponse> {
  const playlist = await readPlaylist(answer, ctx)
  const secret = ctx.signingSecret
  const uid = who.uid as string
  const { expires, scope, sessionId: sid } = who
  let unsigned = 0
  let example = ''
  const result = await rewritePlaylistSliced(playlist, {
    playlistPath: who.path,
    ownHosts: ctx.publicHosts,
    // docs/limits.md#playlists: a token minted here never reaches outside the signed
    // entry's directory. A child playlist inside it gets a token bound to
    // its path and to that directory, so the scope travels down with it; a
    // segment gets a plain token (docs/access.md#signed-urls).
    queryFor: (child) => {
      if (secret === undefined || expires === undefined || scope === undefined) return unsignedQuery(uid, expires, sid)
      if (!inScope(child, scope)) return undefined
      return signedQuery({ secret, uid, path: child, expires, sid, scope: isPlaylistPath(child) ? scope : undefined })
    },
    unsigned: (uri) => {
      if (unsigned++ === 0) example = uri
    }
  }, { lengthOnly: req.method === 'HEAD' })
  if (unsigned > 0 && secret !== undefined) ctx.unsignedChildren.report(who.path, unsigned, example)
  const headers = { ...answer.headers }
  delete headers['content-range']
  delete headers.etag // the rewritten body differs per uid: the origin's validator does not describe it
  delete headers['last-modified']
  delete headers['content-encoding']
  headers['content-length'] = String(result.length)
  return { status: 200, headers, body: result.body === undefined ? null : new BufferBody(result.body), length: result.length }
}

/** The origin's playlist, whole; a PlaylistTooLargeError (502) past `PLAYLIST_MAX_BYTES`, on both origins. */
async function readPlaylist (answer: OriginResponse, ctx: MediaContext): Promise<Buffer> {
  const limit = ctx.playlistMaxBytes
  const tooLarge = (cause?: unknown): PlaylistTooLargeError => {
    ctx.metrics.countLimitHit('playlist_max_bytes')
    return new PlaylistTooLargeError(limit, { cause })
  }
  if (answer.body === null) return Buffer.alloc(0)
  return await answer.body.readAll(limit).catch((err: unknown) => {
    throw err instanceof OriginBodyTooLargeError ? tooLarge(err) : new OriginError(undefined, { cause: err })
  })
}

function unsignedQuery (uid: string, expires: number | undefined, sid: string | undefined): string {
  const q = new URLSearchParams({ uid })
  if (expires !== undefined) q.set('expires', String(expires))
  if (sid !== undefined) q.set('sid', sid)
  return q.toString()
}

/** Write the answer; returns the body bytes the socket took. Records one traffic event. */
async function send (res: ServerResponse, answer: OriginResponse, who: Identity, req: IncomingMessage, ctx: MediaContext): Promise<number> {
  res.statusCode = answer.status
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
  ctx.cors.apply(req, res)
  if (answer.body === null || req.method === 'HEAD' || answer.status === 304) {
    answer.body?.destroy()
    res.end()
    return 0 // HEAD and 304 count 0 (docs/metering.md#rules)
  }
  const transfer = ctx.transfers.open({
    uid: who.uid,
    path: '/' + who.path,
    fileType: who.fileType,
    ip: who.ip,
    sessionId: who.sessionId,
    startedAt: ctx.now(),
    total: answer.length,
    response: res
  })
  try {
    const complete = await answer.body.sendTo(res, transfer)
    // A complete response has run every write callback ('finish' comes
    // after them). An aborted one may still have callbacks to run: the
    // socket's 'close', then one more turn, and they are counted.
    if (!complete) {
      if (!res.closed) await once(res, 'close')
      await new Promise((resolve) => setImmediate(resolve))
    }
  } finally {
    ctx.transfers.close(transfer)
  }
  ctx.metering?.finish(transfer)
  return transfer.bytes
}
