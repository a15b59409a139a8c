/**
 * The paths the server answers itself (admin endpoints, the dashboard, the
 * `/api/`), collected from the routes as Fastify registers them (its
 * `onRoute` hook, app.ts), so that a route added anywhere is never sent to
 * the origin by the direct media path (http-server.ts). A static route adds
 * its path; a route with a parameter or a wildcard adds everything under its
 * static prefix (`/monitor/assets/:name` → `/monitor/assets/`, `/api/*` →
 * `/api/`).
 */
export class OwnPaths {
  readonly #exact = new Set<string>()
  readonly #prefixes: string[] = []

  /**
   * Add a route's URL as Fastify spells it.
   * @throws {Error} for a pattern that would cover every path (only the media route may)
   */
  add (url: string): void {
    const dynamic = url.search(/[:*(]/)
    if (dynamic === -1) {
      this.#exact.add(url)
      return
    }
    const prefix = url.slice(0, url.lastIndexOf('/', dynamic) + 1)
    if (prefix === '/') throw new Error(`route ${url} would take every path from the media route`)
    if (!this.#prefixes.includes(prefix)) this.#prefixes.push(prefix)
  }

  /** Whether a request for `path` (the target without its query, not decoded) is the server's own. */
  has (path: string): boolean {
    if (this.#exact.has(path)) return true
    for (const prefix of this.#prefixes) if (path.startsWith(prefix)) return true
    return false
  }

  /** The exact paths and the prefixes (each ending with `/`), apart: the nginx engine routes them to the server. */
  routes (): { exact: string[], prefixes: string[] } {
    return { exact: [...this.#exact].sort(), prefixes: [...this.#prefixes].sort() }
  }

  /** Exact paths and prefixes (a prefix ends with `/`), for tests and diagnostics. */
  list (): string[] {
    return [...this.#exact, ...this.#prefixes].sort()
  }
}
