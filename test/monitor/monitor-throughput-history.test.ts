import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ThroughputHistory } from '../../src/server/monitor/throughput-history.ts'
import { TransferRegistry } from '../../src/server/media/transfers.ts'
import { waitFor } from '../helpers/wait.ts'

function fixture (capacity = 900): { clock: { now: number }, transfers: TransferRegistry, requests: Map<string, number>, history: ThroughputHistory } {
  const clock = { now: 1_700_000_000_000 }
  const transfers = new TransferRegistry()
  const requests = new Map<string, number>()
  const history = new ThroughputHistory({ bytesTaken: () => transfers.bytesTaken(), requestCounts: () => requests }, { capacity, now: () => clock.now })
  return { clock, transfers, requests, history }
}

const open = (transfers: TransferRegistry, total: number) =>
  transfers.open({ uid: 'u', path: '/big.mp4', fileType: 'mp4', ip: '127.0.0.1', sessionId: undefined, startedAt: 0, total })

describe('throughput history (the dashboard\'s 15-minute chart)', () => {
  it('a long response shows as a steady rate while it streams, not as one jump at its end, and is counted once', () => {
    const { clock, transfers, history } = fixture()
    history.sample() // baseline
    const t = open(transfers, 64 * 1048576)
    for (let second = 1; second <= 4; second++) {
      t.bytes += 1_000_000 // what the socket's write callbacks counted during that second
      clock.now += 1000
      history.sample()
    }
    transfers.close(t) // the response ends: its bytes move to the closed total
    clock.now += 1000
    history.sample()
    const p = history.points()
    assert.deepEqual(p.bytes_per_second, [1_000_000, 1_000_000, 1_000_000, 1_000_000, 0])
    assert.equal(transfers.bytesTaken(), 4_000_000)
  })

  it('rates are per real second between samples (a late timer makes no spike); requests per file type', () => {
    const { clock, transfers, requests, history } = fixture()
    history.sample()
    const t = open(transfers, 10_000)
    t.bytes = 10_000
    transfers.close(t)
    requests.set('ts', 5)
    requests.set('m3u8', 1)
    clock.now += 2500
    history.sample()
    const p = history.points()
    assert.deepEqual(p.t, [1_700_000_002.5])
    assert.deepEqual(p.bytes_per_second, [4000])
    assert.equal(p.requests_per_second.ts[0], 2)
    assert.equal(p.requests_per_second.m3u8[0], 0.4)
    assert.equal(p.requests_per_second.mp4[0], 0)
  })

  it('keeps the last `capacity` samples, oldest first; points(after) gives the tail', () => {
    const { clock, requests, history } = fixture(3)
    history.sample()
    for (let i = 1; i <= 5; i++) {
      requests.set('ts', i * i)
      clock.now += 1000
      history.sample()
    }
    assert.equal(history.size, 3)
    const p = history.points()
    assert.deepEqual(p.t, [1_700_000_003, 1_700_000_004, 1_700_000_005])
    assert.deepEqual(p.requests_per_second.ts, [5, 7, 9])
    assert.deepEqual(history.points(1_700_000_004).t, [1_700_000_005])
  })

  it('start() samples every interval until close(); the timer does not keep the process alive', async () => {
    const transfers = new TransferRegistry()
    const history = new ThroughputHistory({ bytesTaken: () => transfers.bytesTaken(), requestCounts: () => new Map() }, { intervalMs: 20 })
    history.start()
    history.start()
    await waitFor(() => history.size >= 3, 3000, 'three samples')
    history.close()
    const n = history.size
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(history.size, n)
  })
})
