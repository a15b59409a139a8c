import type { IncomingMessage } from 'node:http'
import { normalizeIp } from '../../ip-address.ts'
import type { ClientIpResolver } from '../access/client-ip.ts'
import { peerOf } from '../access/peer.ts'
import type { ForwardedClient } from './origin.ts'

/**
 * What an HTTP origin hears about the client (docs/access.md#requests): the media route
 * reads it off the request ({@link forwardedClient}; the query is the one
 * request-path.ts's `splitTarget` already split off), the HTTP origin turns
 * it into `X-Forwarded-For` and `X-Forwarded-Proto` ({@link xForwardedFor},
 * {@link xForwardedProto}). Only the HTTP origin pays
 * for normalising addresses and joining strings; the route reads fields.
 */

/**
 * Who asked, as the route sees it: the socket peer, and the incoming
 * `X-Forwarded-For`/`-Proto` only when the peer is a trusted proxy
 * (`TRUSTED_PROXIES`). From any other peer they are whatever the client
 * wrote, and passing them on would let it pose as any address to the origin.
 */
export function forwardedClient (req: IncomingMessage, ips: ClientIpResolver): ForwardedClient {
  const address = peerOf(req)
  if (ips.size === 0 || !ips.isTrusted(address)) return { address }
  const h = req.headers
  return { address, forwardedFor: joined(h['x-forwarded-for']), proto: joined(h['x-forwarded-proto']) }
}

/**
 * `X-Forwarded-For` for the origin: the chain a trusted proxy sent, as
 * received, with the peer appended; from an untrusted peer, the peer alone.
 * Each hop appends the address it got the request from, so the origin can
 * walk the chain from the right as `client-ip.ts` does. Undefined when the
 * peer is unknown (the socket is already gone).
 */
export function xForwardedFor (client: ForwardedClient): string | undefined {
  if (client.address === '') return undefined
  // `::ffff:192.0.2.1` (an IPv4 peer of a dual-stack socket) as 192.0.2.1.
  const peer = normalizeIp(client.address) ?? client.address
  const chain = client.forwardedFor?.trim()
  return chain === undefined || chain === '' ? peer : `${chain}, ${peer}`
}

/** A URI scheme (RFC 3986 §3.1). */
const SCHEME = /^[a-z][a-z0-9+.-]*$/

/**
 * `X-Forwarded-Proto` for the origin: the scheme a trusted proxy said the
 * client used (the first entry, should a chain of proxies have made it a
 * list), else `http`, the only scheme streammeter itself listens with.
 */
export function xForwardedProto (client: ForwardedClient): string {
  const said = client.proto
  if (said === undefined) return 'http'
  const comma = said.indexOf(',')
  const first = (comma === -1 ? said : said.slice(0, comma)).trim().toLowerCase()
  return SCHEME.test(first) ? first : 'http'
}

/** Node joins repeated fields of these names with `, ` already; an array (typed as possible) likewise. */
function joined (v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}
