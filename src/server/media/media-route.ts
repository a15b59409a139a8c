import type { IncomingMessage, ServerResponse } from 'node:http'
import { once } from 'node:events'
import {
  OriginBodyTooLargeError, OriginError, PlaylistTooLargeError, StreammeterError, TooManyTransfersError
} from '../../errors.ts'
import type { FileType } from '../../meter/index.ts'
import type { ServerMetrics } from '../admin/metrics.ts'
import type { Authorizer, Denial, Identity } from '../access/authorize.ts'
import type { ClientIpResolver } from '../access/client-ip.ts'
import type { DeniedLog } from '../access/denials.ts'
import { peerOf } from '../access/peer.ts'
import { sessionCookie } from '../access/sessions.ts'
import { inScope, signedQuery } from '../access/url-signer.ts'
import { sendError } from '../error-reply.ts'
import { firstValue } from '../header-value.ts'
import type { MeteringInput } from '../metering/metering-input.ts'
import { BufferBody } from '../origin/buffer-body.ts'
import { forwardedClient, xForwardedProto } from '../origin/forwarding.ts'
import { fileTypeOf } from '../origin/media-types.ts'
import type { ForwardedClient, ForwardedHeaders, Origin, OriginResponse } from '../origin/origin.ts'
import type { CorsPolicy } from './cors.ts'
import { isPlaylistPath, rewritePlaylistSliced } from './playlist-rewriter.ts'
import { parseMediaPath, splitTarget } from './request-path.ts'
import type { TransferRegistry } from './transfers.ts'
import type { TransfersPerIp } from './transfers-per-ip.ts'
import type { UnsignedChildLog } from './unsigned-children.ts'

/** Status recorded in metrics for a request whose client left before the answer (nginx's 499). */
const CLIENT_CLOSED = 499

/** What the media handler needs. */
export interface MediaContext {
  origin: Origin
  /** Turns transfers into traffic events; undefined when metering is off. */
  metering: MeteringInput | undefined
  /** The access check (signatures, uid, session, client IP). */
  access: Authorizer
  /** `SESSION_TTL` in seconds: the session cookie's Max-Age. */
  sessionTtl: number
  /**
   * The nginx engine: answers name their uid in `X-Streammeter-Uid`
   * (percent-encoded), which nginx logs and never passes on.
   */
  tellsUid: boolean
  /** `SIGNING_SECRET`, for the tokens rewritten playlists carry. */
  signingSecret: string | undefined
  /** `TRUSTED_PROXIES`, for the `X-Forwarded-*` an HTTP origin is sent. */
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
  /** Refused requests (docs/access.md#denials). */
  denials: DeniedLog
  now: () => number
}

/** A media request that checked out: who asks, for what. */
interface Request extends Identity {
  path: string
  /** The request's query string as received, without the `?` (`''` when none): passed to an HTTP origin. */
  query: string
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
    const identified = identify(req, ctx)
    const who = identified instanceof Promise ? await identified : identified
    fileType = who.fileType
    if (!ctx.perIp.acquire(who.ip)) {
      ctx.metrics.countLimitHit('max_transfers_per_ip')
      throw new TooManyTransfersError(ctx.perIp.limit)
    }
    counted = who.ip
    // Once: the origin is told of the client, and a session cookie is Secure behind https.
    const client = forwardedClient(req, ctx.ips)
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
        client,
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
    bytes = await send(res, answer, who, req, client, ctx)
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

/** Who asks: at once for most requests, a promise when a session or grant must be looked up. */
function identify (req: IncomingMessage, ctx: MediaContext): Request | Promise<Request> {
  const { rawPath, rawQuery } = splitTarget(req.url ?? '/')
  const path = parseMediaPath(rawPath)
  const who = ctx.access.authorize({ path, query: new URLSearchParams(rawQuery), headers: req.headers, peer: peerOf(req), method: req.method })
  return who instanceof Promise
    ? who.then((w) => admitted(w, path, rawQuery, ctx))
    : admitted(who, path, rawQuery, ctx)
}

/** The request once let in; a denial is counted and thrown. */
function admitted (who: Identity | Denial, path: string, rawQuery: string, ctx: MediaContext): Request {
  if (who.kind === 'denied') {
    ctx.denials.add({ reason: who.reason, status: who.error.statusCode, path: `/${path}`, ip: who.ip, time: ctx.now() })
    throw who.error
  }
  // Spelled out rather than spread: one shape, no property-by-property copy.
  return {
    kind: 'allowed',
    uid: who.uid,
    expires: who.expires,
    scope: who.scope,
    ipBinding: who.ipBinding,
    sessionId: who.sessionId,
    session: who.session,
    ip: who.ip,
    path,
    query: rawQuery,
    fileType: fileTypeOf(path)
  }
}

function forwardedHeaders (req: IncomingMessage): ForwardedHeaders {
  const h = req.headers
  return {
    range: firstValue(h.range),
    'if-range': firstValue(h['if-range']),
    'if-none-match': firstValue(h['if-none-match']),
    'if-modified-since': firstValue(h['if-modified-since']),
    'if-match': firstValue(h['if-match']),
    'if-unmodified-since': firstValue(h['if-unmodified-since']),
    'user-agent': firstValue(h['user-agent'])
  }
}

/**
 * Read the whole playlist (at most `PLAYLIST_MAX_BYTES`), rewrite its URIs
 * in slices that let other requests run, answer 200 in full with the new
 * length. A HEAD gets the length without the body being built.
 */
async function rewritten (answer: OriginResponse, who: Request, req: IncomingMessage, ctx: MediaContext): Promise<OriginResponse> {
  const playlist = await readPlaylist(answer, ctx)
  const secret = ctx.signingSecret
  const uid = who.uid as string
  const { expires, scope, ipBinding: ip } = who
  // Only a session id the URL carried (`sid`) is passed down in URLs: one from
  // a header or cookie the player sends again itself, and the cookie may be
  // an access session, a credential that never goes into a URL.
  const sid = who.sessionId !== undefined && who.sessionId === new URLSearchParams(who.query).get('sid')?.trim() ? who.sessionId : undefined
  let unsigned = 0
  let example = ''
  const result = await rewritePlaylistSliced(playlist, {
    playlistPath: who.path,
    ownHosts: ctx.publicHosts,
    // docs/limits.md#playlists: a token minted here never reaches outside the signed
    // entry's directory. A child playlist inside it gets a token bound to
    // its path and to that directory, so the scope travels down with it; a
    // segment gets a plain token (docs/access.md#signed-urls). A binding to
    // the client's address travels down to both.
    queryFor: (child) => {
      if (secret === undefined || expires === undefined || scope === undefined) return unsignedQuery(uid, expires, sid)
      if (!inScope(child, scope)) return undefined
      return signedQuery({ secret, uid, path: child, expires, sid, scope: isPlaylistPath(child) ? scope : undefined, ip })
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
async function send (res: ServerResponse, answer: OriginResponse, who: Request, req: IncomingMessage, client: ForwardedClient, ctx: MediaContext): Promise<number> {
  // One flat name/value list for writeHead(): no setHeader() per field,
  // each of which would validate, lower-case and store it in a map of its own
  // (docs/performance.md#why-the-code-is-shaped-this-way).
  const fields: string[] = []
  const headers = answer.headers
  for (const name in headers) fields.push(name, headers[name] as string)
  if (ctx.tellsUid && who.uid !== undefined) fields.push('x-streammeter-uid', encodeURIComponent(who.uid))
  if (who.session !== undefined) {
    // Sent with every answer the session covers, so its Max-Age slides (docs/access.md#sessions).
    fields.push('set-cookie', sessionCookie(who.session, ctx.sessionTtl, xForwardedProto(client) === 'https'))
    fields.push('x-session-id', who.session)
  }
  ctx.cors.addTo(req, fields)
  res.writeHead(answer.status, fields)
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
