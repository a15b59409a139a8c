import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { EnginePeers, PEER_HEADER, PEER_KEY_HEADER, peerOf } from '../../src/server/access/peer.ts'

const KEY = 'k'.repeat(64)

/** A request as node:http hands it over, from the socket peer 127.0.0.1. */
function requestWith (headers: Record<string, string>): IncomingMessage {
  const socket = new Socket()
  Object.defineProperty(socket, 'remoteAddress', { value: '127.0.0.1' })
  return { headers: { ...headers }, socket } as unknown as IncomingMessage
}

describe('the client address of a request the nginx engine passed on', () => {
  const peers = new EnginePeers(KEY)

  it('is the one nginx names, with the engine key', () => {
    const req = requestWith({ [PEER_HEADER]: '203.0.113.9', [PEER_KEY_HEADER]: KEY })
    peers.adopt(req)
    assert.equal(peerOf(req), '203.0.113.9')
    assert.equal(req.headers[PEER_HEADER], undefined)
    assert.equal(req.headers[PEER_KEY_HEADER], undefined)
  })

  it('is the socket peer with a wrong, short or missing key, and the headers are gone either way', () => {
    for (const key of ['x'.repeat(64), KEY.slice(1), undefined]) {
      const req = requestWith({ [PEER_HEADER]: '203.0.113.9', ...(key === undefined ? {} : { [PEER_KEY_HEADER]: key }) })
      peers.adopt(req)
      assert.equal(peerOf(req), '127.0.0.1')
      assert.deepEqual(Object.keys(req.headers), [])
    }
  })

  it('is the socket peer without the engine (the node engine never believes the header)', () => {
    const req = requestWith({ [PEER_HEADER]: '203.0.113.9', [PEER_KEY_HEADER]: KEY })
    assert.equal(peerOf(req), '127.0.0.1')
  })

  it('refuses a short key', () => {
    assert.throws(() => new EnginePeers('short'), /at least 32/)
  })
})
