/** The logger method {@link UnsignedChildLog} uses (pino's, Fastify's). */
export interface WarnLogger {
  warn (obj: object, msg: string): void
}

/** Playlists remembered as logged; past this the memory is cleared and they may be logged again. */
const MAX_REMEMBERED = 1024
/** Longest example URI shown in the log line. */
const MAX_EXAMPLE = 200

/**
 * Says, once per playlist, that rewriting left URIs of it without a token
 * (docs/limits.md#playlists): children outside the directory the request was signed for
 * (`../../private/…`, an absolute URL on the proxy's host to such a path) or
 * absolute URLs on other hosts. One line per playlist path, not per URI nor
 * per request: an uploaded playlist that probes for tokens is worth a line,
 * not a line for every viewer. Bounded: at most {@link MAX_REMEMBERED} paths
 * are remembered, then the memory starts again.
 */
export class UnsignedChildLog {
  readonly #log: WarnLogger
  readonly #logged = new Set<string>()

  constructor (log: WarnLogger) {
    this.#log = log
  }

  /**
   * Note that the playlist at `playlistPath` (no leading slash) had `count`
   * URIs left as written, the first being `example`.
   */
  report (playlistPath: string, count: number, example: string): void {
    if (this.#logged.has(playlistPath)) return
    if (this.#logged.size >= MAX_REMEMBERED) this.#logged.clear()
    this.#logged.add(playlistPath)
    this.#log.warn({ playlist: '/' + playlistPath, unsigned: count, example: example.slice(0, MAX_EXAMPLE) },
      'playlist URIs left without a token: outside the directory the playlist was signed for, or on another host')
  }
}
