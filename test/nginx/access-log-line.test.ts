import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ACCESS_LOG_FORMAT, parseLogLine } from '../../src/server/nginx/access-log-line.ts'
import { jsonLogLine, logLine } from '../helpers/access-log.ts'

const FIELDS = ['3', '1700000000.123', 'u1', '4096', '206', 'GET', 'OK', '/v/seg.ts', '10.0.0.1', '', '', '', '', '0.004', '']
/** FIELDS, read. */
const LINE = {
  t: 1700000000.123,
  uid: 'u1',
  bytes: 4096,
  status: 206,
  method: 'GET',
  done: 'OK',
  path: '/v/seg.ts',
  ip: '10.0.0.1',
  xff: '',
  sidh: '',
  scookie: '',
  sid: '',
  rt: 0.004,
  denial: ''
}

describe('access-log lines', () => {
  it('the format is the version and the fields, separated by tabs, in the order the parser reads them', () => {
    assert.equal(ACCESS_LOG_FORMAT, ['3', '$msec', '$sm_uid', '$body_bytes_sent', '$status', '$request_method', '$request_completion',
      '$uri', '$realip_remote_addr', '$http_x_forwarded_for', '$http_x_session_id', '$cookie_session_id_fileserver', '$sm_sid',
      '$request_time', '$sm_denial'].join('\t'))
  })

  it('reads the verdict of a refused request, and the lines of version 2, which end before it', () => {
    const refused = [...FIELDS]
    refused[4] = '403'
    refused[14] = 'ip-mismatch'
    assert.deepEqual(parseLogLine(refused.join('\t')), { ...LINE, status: 403, denial: 'ip-mismatch' })
    assert.deepEqual(parseLogLine(['2', ...FIELDS.slice(1, -1)].join('\t')), LINE)
    // A version-2 line with the field of version 3, and the other way round, is no line.
    assert.equal(parseLogLine(['2', ...FIELDS.slice(1)].join('\t')), undefined)
    assert.equal(parseLogLine(FIELDS.slice(0, -1).join('\t')), undefined)
  })

  it('reads every field of a line', () => {
    assert.deepEqual(parseLogLine(FIELDS.join('\t')), LINE)
  })

  it('reads values as escape=json writes them: escapes undone, UTF-8 as it is', () => {
    const f = [...FIELDS]
    f[2] = 'é-ü'
    f[9] = '1.2.3.4, \\"x\\"\\t\\\\y'
    f[12] = 'a\\u0001b'
    const line = parseLogLine(f.join('\t'))
    assert.equal(line?.uid, 'é-ü')
    assert.equal(line?.xff, '1.2.3.4, "x"\t\\y')
    assert.equal(line?.sid, 'a\u0001b')
  })

  it('still reads the JSON object lines of earlier versions', () => {
    assert.deepEqual(parseLogLine(jsonLogLine('u1', 10).trimEnd()), { ...LINE, bytes: 10, status: 200, rt: 0 })
    assert.equal(parseLogLine(logLine('u1', 10).slice(0, -1))?.bytes, 10)
  })

  it('refuses what is no line: another version, a field too many or too few, a bad number or escape', () => {
    const bad = (i: number, v: string): string => FIELDS.map((x, j) => j === i ? v : x).join('\t')
    for (const text of [
      '', 'garbage', bad(0, '4'), [...FIELDS, 'x'].join('\t'), FIELDS.slice(1).join('\t'), bad(3, ''), bad(3, '-1'),
      bad(3, '1.5'), bad(4, 'x'), bad(1, 'now'), bad(13, ''), bad(2, 'a\\qb'), bad(2, 'a\\'),
      '{"uid":"a","bytes":99', '{"uid":"a","bytes":"99","status":200}', 'null'
    ]) {
      assert.equal(parseLogLine(text), undefined, text)
    }
  })
})
