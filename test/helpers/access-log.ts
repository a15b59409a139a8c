import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import type { Delivery, MeteringInput } from '../../src/server/metering/metering-input.ts'
import { AccessLogReader } from '../../src/server/nginx/access-log-reader.ts'
import type { AccessLogReaderOptions } from '../../src/server/nginx/access-log-reader.ts'

/** One access-log line as nginx writes it (access-log-line.ts), with its line feed; the same text for the same arguments. */
export function logLine (uid: string, bytes: number, status = 200, t = 1700000000.123): string {
  return ['3', t.toFixed(3), uid, bytes, status, 'GET', 'OK', '/v/seg.ts', '10.0.0.1', '', '', '', '', '0.000', ''].join('\t') + '\n'
}

/** The same line in the JSON object format of earlier versions, which the reader still reads. */
export function jsonLogLine (uid: string, bytes: number, status = 200): string {
  return JSON.stringify({ t: 1700000000.123, uid, bytes, status, method: 'GET', done: 'OK', path: '/v/seg.ts', ip: '10.0.0.1', xff: '', sidh: '', scookie: '', sid: '' }) + '\n'
}

/** A metering input that keeps the bytes per uid it was handed. */
export interface Tally {
  metering: MeteringInput
  bytes: Map<string, number>
  total (): number
}

export function tally (): Tally {
  const bytes = new Map<string, number>()
  const metering = {
    finish (d: Delivery): void {
      if (d.uid !== undefined) bytes.set(d.uid, (bytes.get(d.uid) ?? 0) + d.bytes)
    }
  } as unknown as MeteringInput
  return { metering, bytes, total: () => [...bytes.values()].reduce((a, b) => a + b, 0) }
}

/** A reader of `path` metering into `t`, with the rest of `options`. */
export function readerOf (path: string, t: Tally, options: Partial<AccessLogReaderOptions> = {}): AccessLogReader {
  return new AccessLogReader({ path, key: 'nginx:test', metering: t.metering, ips: new ClientIpResolver(), ...options })
}
