import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/**
 * The address a request came from: the socket peer, or, for a request the
 * nginx engine's nginx passed on (a playlist, an admin path), the peer
 * nginx saw. nginx reuses its connections to streammeter for many clients,
 * so the peer is a property of each request, not of the socket.
 */
const PEER = Symbol('streammeter.peer')

type WithPeer = IncomingMessage & { [PEER]?: string }

/** Header holding the client's address (nginx's `$remote_addr`). */
export const PEER_HEADER = 'x-streammeter-peer'
/** Header holding the key that proves the request came from our nginx. */
export const PEER_KEY_HEADER = 'x-streammeter-peer-key'

/** The address `req` came from (see the module comment); `''` when the socket is already gone. */
export function peerOf (req: IncomingMessage): string {
  return (req as WithPeer)[PEER] ?? req.socket.remoteAddress ?? ''
}

/**
 * Believes {@link PEER_HEADER} on a request that carries the engine's key
 * (a random key per start, in the nginx configuration only, compared in
 * constant time). Both headers are removed from every request, believed or
 * not, so that they never reach an origin.
 */
export class EnginePeers {
  readonly #key: Buffer

  constructor (key: string) {
    if (key.length < 32) throw new TypeError('the engine key must have at least 32 characters')
    this.#key = Buffer.from(key, 'utf8')
  }

  /** Take the peer from `req`'s headers when its key is ours; strip both headers. */
  adopt (req: IncomingMessage): void {
    const h = req.headers
    const presented = h[PEER_KEY_HEADER]
    const peer = h[PEER_HEADER]
    if (presented === undefined && peer === undefined) return
    delete h[PEER_KEY_HEADER]
    delete h[PEER_HEADER]
    if (typeof presented !== 'string' || typeof peer !== 'string' || peer === '') return
    const given = Buffer.from(presented, 'utf8')
    if (given.length === this.#key.length && timingSafeEqual(given, this.#key)) (req as WithPeer)[PEER] = peer
  }
}
