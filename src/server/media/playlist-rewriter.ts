/**
 * Rewrites an HLS playlist (RFC 8216) so that every URI the player will fetch
 * through this proxy carries its own signed query (docs/access.md#playlists).
 *
 * Line-based on purpose: the playlist is not parsed and re-serialised, so tags
 * this code does not know, comments, attribute order, number formats, line
 * endings (LF or CRLF, RFC 8216 §4.1) and a missing final newline all pass
 * through byte for byte. Only two things change: URI lines, and `URI="…"`
 * attributes of tags (EXT-X-KEY, -MAP, -MEDIA, -I-FRAME-STREAM-INF,
 * -SESSION-KEY, -SESSION-DATA, -PART, -PRELOAD-HINT, -RENDITION-REPORT, and
 * any other tag whose value is an attribute list with a `URI`). Each is
 * rewritten when it is relative or absolute on one of the proxy's own hosts
 * (`PUBLIC_HOSTS`, never the request's `Host` header), and `queryFor` has a
 * query for it (it has none for a child outside the signed entry's scope);
 * URIs on other hosts and other schemes (`data:`, `skd:`…) are left alone.
 *
 * Nothing is cached: the query differs per request (uid, expires, sid), and
 * resolving and signing a line costs microseconds.
 */

/** What {@link rewritePlaylist} needs to know about the request. */
export interface RewriteContext {
  /** URL-decoded path of the playlist without its leading slash, e.g. 'hls/v1/index.m3u8'. */
  playlistPath: string
  /**
   * host[:port] values (lower-case) that are the proxy itself (`PUBLIC_HOSTS`):
   * absolute URIs on them are rewritten too. Never taken from the request: a
   * client chooses its `Host` header.
   */
  ownHosts: ReadonlySet<string>
  /**
   * The query to append for a child at `childPath` (URL-decoded, no leading
   * slash), e.g. 'uid=…&expires=…&token=…&sid=…'; `undefined` to leave the
   * URI as it is written (a child outside the scope the request may sign).
   */
  queryFor (childPath: string): string | undefined
  /** Told of each http(s) URI left as written: outside the scope, or on another host. */
  unsigned?: ((uri: string) => void) | undefined
}

/** Query parameters the proxy sets: stale copies in a playlist URI are removed before re-signing. */
const SIGNING_PARAMS: ReadonlySet<string> = new Set(['uid', 'expires', 'token', 'sid', 'scope'])
/** A file name in the playlist's own directory that resolving and decoding leave as it is (the common case). */
const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.~-]*$/
// A dummy origin to resolve against: `.invalid` can never be a real host (RFC 6761 §6.4).
const DUMMY_HOST = 'proxy.invalid'
const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/
const DEFAULT_PORT: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' }
// `AttributeName=` (RFC 8216 §4.2: [A-Z0-9-]); the value follows.
const ATTRIBUTE_NAME = /[A-Z0-9-]+=/y

/** Whether `path` names a playlist (`.m3u8`, any case). */
export function isPlaylistPath (path: string): boolean {
  return path.length >= 5 && path.slice(-5).toLowerCase() === '.m3u8'
}

/**
 * `body` with every URI line and `URI="…"` attribute that points back at the
 * proxy extended by `ctx.queryFor(<that child's path>)`; every other byte as it was.
 * Synchronous: for small playlists and tests; the server uses
 * {@link rewritePlaylistSliced}.
 */
export function rewritePlaylist (body: string, ctx: RewriteContext): string {
  const rewrite = uriRewriter(ctx)
  // RFC 8216 §4.1: lines end in LF or CRLF. Splitting on LF keeps a CR at
  // the end of its line, where rewriteLine leaves it untouched.
  const lines = body.split('\n')
  for (let i = 0; i < lines.length; i++) lines[i] = rewriteLine(lines[i]!, i === 0, rewrite)
  return lines.join('\n')
}

/** Options of {@link rewritePlaylistSliced}. */
export interface SlicedRewriteOptions {
  /**
   * Milliseconds of rewriting between two yields to the event loop. A 1 MiB
   * playlist takes a few hundred ms to rewrite; in slices this short a small
   * request, which needs several turns of the loop, waits a few ms per turn.
   * @default 1
   */
  sliceMs?: number | undefined
  /** Compute the length of the result only, without building it (HEAD). @default false */
  lengthOnly?: boolean | undefined
}

/** What {@link rewritePlaylistSliced} made. */
export interface RewrittenPlaylist {
  /** Bytes of the rewritten playlist. */
  length: number
  /** The rewritten playlist; `undefined` when only the length was asked for. */
  body: Buffer | undefined
}

const LF = 0x0a

/**
 * {@link rewritePlaylist} of a UTF-8 playlist, in slices of about `sliceMs`
 * that yield to the event loop (`setImmediate`) between them, so that one
 * large playlist does not hold up every other request (docs/limits.md#playlists: 7 MB used
 * to block the loop for 2.2 s). Nothing is done to the whole playlist at
 * once: lines are found in the bytes (an LF byte is never part of a UTF-8
 * sequence) and decoded one by one, and each slice's output is encoded as it
 * is finished, so no step between two yields grows with the playlist. With
 * `lengthOnly` the lines are rewritten and measured, never joined: a HEAD
 * learns the length without the body being built.
 */
export async function rewritePlaylistSliced (body: Buffer, ctx: RewriteContext, options: SlicedRewriteOptions = {}): Promise<RewrittenPlaylist> {
  const sliceMs = options.sliceMs ?? 1
  const lengthOnly = options.lengthOnly === true
  const rewrite = uriRewriter(ctx)
  const chunks: Buffer[] = []
  let length = 0
  let slice: string[] = []
  let sliceStart = performance.now()
  for (let at = 0, n = 0; at <= body.length; n++) {
    const lf = body.indexOf(LF, at)
    const end = lf === -1 ? body.length : lf
    const out = rewriteLine(body.toString('utf8', at, end), at === 0, rewrite) + (lf === -1 ? '' : '\n')
    at = end + 1
    if (lengthOnly) length += Buffer.byteLength(out)
    else slice.push(out)
    // The clock is read every 64 lines: a line costs microseconds.
    if ((n & 63) === 63 && performance.now() - sliceStart >= sliceMs) {
      if (!lengthOnly) {
        chunks.push(Buffer.from(slice.join(''), 'utf8'))
        slice = []
      }
      await new Promise((resolve) => setImmediate(resolve))
      sliceStart = performance.now()
    }
  }
  if (lengthOnly) return { length, body: undefined }
  chunks.push(Buffer.from(slice.join(''), 'utf8'))
  const out = Buffer.concat(chunks)
  return { length: out.length, body: out }
}

/** The function that rewrites one URI of a playlist at `ctx.playlistPath`. */
function uriRewriter (ctx: RewriteContext): (uri: string) => string {
  const base = new URL(`http://${DUMMY_HOST}/${ctx.playlistPath.split('/').map(encodeURIComponent).join('/')}`)
  const dir = ctx.playlistPath.slice(0, ctx.playlistPath.lastIndexOf('/') + 1)
  return (uri) => {
    // `seg-00042.ts`: the URL parser would give `dir + uri`; it costs more
    // than the rest of the line's work, and a 1 MiB playlist has ~35,000.
    if (PLAIN_NAME.test(uri)) {
      const added = ctx.queryFor(dir + uri)
      return added === undefined || added === '' ? uri : `${uri}?${added}`
    }
    return rewriteUri(uri, base, ctx)
  }
}

/** One line (without its LF) rewritten; `first` for the playlist's first line. */
function rewriteLine (line: string, first: boolean, rewrite: (uri: string) => string): string {
  // A BOM is forbidden (RFC 8216 §4.1) but must not turn `#EXTM3U` into a URI line.
  const bom = first && line.startsWith('\uFEFF') ? '\uFEFF' : ''
  const rest = bom === '' ? line : line.slice(1)
  const cr = rest.endsWith('\r') ? '\r' : ''
  const text = cr === '' ? rest : rest.slice(0, -1)
  const start = text.length - text.trimStart().length
  if (start === text.length) return line // blank
  if (text[start] === '#') {
    if (!text.startsWith('#EXT', start)) return line // a comment
    return bom + text.slice(0, start) + rewriteTag(text.slice(start), rewrite) + cr
  }
  // A URI line; spaces around it (not allowed, but seen) stay where they were.
  const end = text.trimEnd().length
  return bom + text.slice(0, start) + rewrite(text.slice(start, end)) + text.slice(end) + cr
}

/**
 * A tag line with its `URI` attribute rewritten, if its value is an attribute
 * list (RFC 8216 §4.2) with one; otherwise the line as it is. EXTINF is
 * skipped: its title is free text that may look like an attribute list.
 */
function rewriteTag (line: string, rewrite: (uri: string) => string): string {
  const colon = line.indexOf(':')
  if (colon === -1 || line.startsWith('#EXTINF:')) return line
  let out = ''
  let copied = 0
  let at = colon + 1
  while (at < line.length) {
    ATTRIBUTE_NAME.lastIndex = at
    const name = ATTRIBUTE_NAME.exec(line)
    if (name === null) return line // not an attribute list after all
    at += name[0].length
    if (line[at] === '"') {
      const close = line.indexOf('"', at + 1)
      if (close === -1) return line
      if (name[0] === 'URI=') {
        out += line.slice(copied, at + 1) + rewrite(line.slice(at + 1, close))
        copied = close
      }
      at = close + 1
    } else {
      const comma = line.indexOf(',', at)
      at = comma === -1 ? line.length : comma
    }
    if (at < line.length) {
      if (line[at] !== ',') return line
      at++
    }
  }
  return out + line.slice(copied)
}

/** `uri` with the signed query, or as it is when it does not point at the proxy. */
function rewriteUri (uri: string, base: URL, ctx: RewriteContext): string {
  if (uri === '') return uri
  let url: URL
  try {
    url = new URL(uri, base)
  } catch {
    return uri // unparsable: the player would not get far with it either
  }
  if (url.host !== DUMMY_HOST || SCHEME.test(uri)) {
    // Absolute or protocol-relative (`//host/x`): only our own hosts.
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return uri
    if (!isOwnHost(url, ctx.ownHosts)) {
      ctx.unsigned?.(uri)
      return uri
    }
  }
  let childPath: string
  try {
    // The server decodes the request path the same way before signing checks.
    childPath = decodeURIComponent(url.pathname).slice(1)
  } catch {
    return uri // a malformed escape: the proxy would refuse the request anyway
  }
  const added = ctx.queryFor(childPath)
  if (added === undefined) {
    ctx.unsigned?.(uri)
    return uri
  }
  const hash = uri.indexOf('#')
  const fragment = hash === -1 ? '' : uri.slice(hash)
  const beforeHash = hash === -1 ? uri : uri.slice(0, hash)
  const question = beforeHash.indexOf('?')
  const target = question === -1 ? beforeHash : beforeHash.slice(0, question)
  const kept = question === -1 ? [] : beforeHash.slice(question + 1).split('&').filter(keepParam)
  if (added !== '') kept.push(added)
  return kept.length === 0 ? target + fragment : `${target}?${kept.join('&')}${fragment}`
}

/**
 * Drops empty pieces and any uid/expires/token/sid/scope a playlist carried (say, one
 * produced by another signing proxy or saved from a rewritten response): left
 * in, the request would have two of each, and the signature check refuses
 * repeated parameters.
 */
function keepParam (piece: string): boolean {
  if (piece === '') return false
  const eq = piece.indexOf('=')
  const raw = (eq === -1 ? piece : piece.slice(0, eq)).replaceAll('+', ' ')
  let name: string
  try {
    name = decodeURIComponent(raw)
  } catch {
    name = raw
  }
  return !SIGNING_PARAMS.has(name)
}

function isOwnHost (url: URL, ownHosts: ReadonlySet<string>): boolean {
  // URL drops a default port from `host`; the operator may have listed it.
  const host = url.host.toLowerCase()
  return ownHosts.has(host) ||
    (url.port === '' && ownHosts.has(`${url.hostname.toLowerCase()}:${DEFAULT_PORT[url.protocol] ?? ''}`))
}
