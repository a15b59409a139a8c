/**
 * The query string an HTTP origin gets (docs/access.md#requests), from the base URL's own
 * query (`ORIGIN_URL`'s, say an access key) and the client's.
 *
 * How the two combine: the base query first, exactly as written; then the
 * client's parameters in their order, byte for byte as received, less
 *
 * - streammeter's own, which are for the proxy and never for the origin:
 *   `uid`, `expires`, `token`, `sid` (a token reaching the origin would end
 *   up in its logs) and the signing extensions `scope` and `ip`;
 * - any parameter the base query names: the base wins, so that a client
 *   cannot replace an origin access key with one of its own;
 * - empty pieces (`a=1&&b=2`).
 *
 * Names are compared percent-decoded, `+` as a space, as URLSearchParams
 * reads them: the proxy reads `%74oken` as `token`, so it is dropped too.
 * Everything else (LL-HLS `_HLS_msn`/`_HLS_part`/`_HLS_skip`, an origin's
 * own parameters) passes untouched.
 */

/** Parameters the proxy consumes (url-signer.ts, session-id.ts); never sent on. */
export const OWN_PARAMETERS: ReadonlySet<string> = new Set(['uid', 'expires', 'token', 'sid', 'scope', 'ip'])

/** Builds the query part (`?…` or `''`) of each request to one HTTP origin. */
export class OriginQuery {
  readonly #base: string
  readonly #dropped: ReadonlySet<string>

  /** @param baseSearch - the base URL's `search` (`?key=k1`, or `''`) */
  constructor (baseSearch: string) {
    this.#base = baseSearch.startsWith('?') ? baseSearch.slice(1) : baseSearch
    const dropped = new Set(OWN_PARAMETERS)
    for (const name of new URLSearchParams(this.#base).keys()) dropped.add(name)
    this.#dropped = dropped
  }

  /**
   * `?` and the query for a request whose own query string (without `?`) is
   * `query`; `''` when neither has one. The client's query is only taken
   * apart when there is one.
   */
  for (query: string | undefined): string {
    const client = query === undefined || query === '' ? '' : this.#kept(query)
    if (client === '') return this.#base === '' ? '' : '?' + this.#base
    return this.#base === '' ? '?' + client : `?${this.#base}&${client}`
  }

  #kept (query: string): string {
    let out = ''
    let start = 0
    while (start <= query.length) {
      let end = query.indexOf('&', start)
      if (end === -1) end = query.length
      if (end > start) {
        const piece = query.slice(start, end)
        if (!this.#dropped.has(nameOf(piece))) out = out === '' ? piece : `${out}&${piece}`
      }
      start = end + 1
    }
    return out
  }
}

/** A parameter's name, decoded as URLSearchParams decodes it (`+` is a space; a bad escape stays as it is). */
function nameOf (piece: string): string {
  const eq = piece.indexOf('=')
  const raw = eq === -1 ? piece : piece.slice(0, eq)
  if (!raw.includes('%') && !raw.includes('+')) return raw
  const spaced = raw.replaceAll('+', ' ')
  try {
    return decodeURIComponent(spaced)
  } catch {
    // URLSearchParams keeps a malformed escape as it is: the name then
    // holds a `%` and equals none of the dropped names, as here.
    return spaced
  }
}
