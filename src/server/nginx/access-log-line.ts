/**
 * One line of the nginx engine's access log: how nginx writes it
 * ({@link ACCESS_LOG_FORMAT}) and how it is read back ({@link parseLogLine}).
 */

/** One line of the access log, read. */
export interface LogLine {
  /** Unix seconds with ms (`$msec`). */
  t: number
  /** The uid the request is metered under; empty when none or refused. */
  uid: string
  /** Body bytes sent (`$body_bytes_sent`). */
  bytes: number
  status: number
  method: string
  /** `OK` when nginx finished the response, else empty (`$request_completion`). */
  done: string
  /** The decoded path (`$uri`). */
  path: string
  /** The socket peer. */
  ip: string
  /** `X-Forwarded-For`. */
  xff: string
  /** `X-Session-ID`. */
  sidh: string
  /** The session cookie (only that one: the log holds no other cookie). */
  scookie: string
  /** The decoded `sid` parameter. */
  sid: string
  /** Seconds nginx took (`$request_time`); 0 on lines of versions that did not log it. */
  rt: number
  /**
   * The access verdict of a refused request (njs's `$sm_access`: `bad`,
   * `ip-mismatch`, `expired`, `long-uid`) on a 400, 403 or 410; empty
   * otherwise, and on lines of versions that did not log it.
   */
  denial: string
}

/**
 * The fields of a line in the order nginx writes them, with the variable of
 * each (the client IP and the session are resolved by the reader with the
 * node engine's rules, from `ip`, `xff`, `sidh`, `scookie` and `sid`).
 */
const FIELDS: ReadonlyArray<readonly [keyof LogLine, string]> = [
  ['t', '$msec'],
  ['uid', '$sm_uid'],
  ['bytes', '$body_bytes_sent'],
  ['status', '$status'],
  ['method', '$request_method'],
  ['done', '$request_completion'],
  ['path', '$uri'],
  ['ip', '$realip_remote_addr'],
  ['xff', '$http_x_forwarded_for'],
  ['sidh', '$http_x_session_id'],
  ['scookie', '$cookie_session_id_fileserver'],
  ['sid', '$sm_sid'],
  ['rt', '$request_time'],
  ['denial', '$sm_denial']
]

/** The first field of a line of this format: its version. Lines of version 2 end before `denial`. */
const VERSION = '3'

/**
 * The access log's `log_format` (written with `escape=json`): the version,
 * then the {@link FIELDS}, separated by tabs. `escape=json` writes a tab, a
 * line feed, `"` and `\` inside a value as JSON escapes, so a tab always
 * separates and a line feed always ends a line, and a value with a `\` is
 * a JSON string's contents. Read with a split, a line costs the reader
 * 0.37 µs against 0.87 µs for the JSON object lines of earlier versions,
 * which {@link parseLogLine} still reads (a log written before an upgrade).
 */
export const ACCESS_LOG_FORMAT = [VERSION, ...FIELDS.map(([, variable]) => variable)].join('\t')

const NUMBERS: ReadonlySet<keyof LogLine> = new Set(['t', 'bytes', 'status', 'rt'])
/** The fields a line of version 2 has (all but `denial`). */
const V2_FIELDS = FIELDS.length - 1

/** Where each field is in a line split at its tabs. */
const AT = Object.fromEntries(FIELDS.map(([name], i) => [name, i + 1])) as Record<keyof LogLine, number>

/** A line of the access log, without its line feed; undefined when it is none. */
export function parseLogLine (text: string): LogLine | undefined {
  try {
    return text.startsWith('{') ? fromJson(text) : fromFields(text.split('\t'))
  } catch {
    // A value with a `\` that is no JSON escape: not written by nginx.
    return undefined
  }
}

function fromFields (f: string[]): LogLine | undefined {
  const current = f[0] === VERSION && f.length === FIELDS.length + 1
  if (!current && !(f[0] === '2' && f.length === V2_FIELDS + 1)) return undefined
  const bytes = count(f[AT.bytes])
  const status = count(f[AT.status])
  const t = decimal(f[AT.t])
  const rt = decimal(f[AT.rt])
  if (bytes === undefined || status === undefined || t === undefined || rt === undefined) return undefined
  return {
    t,
    uid: value(f[AT.uid]),
    bytes,
    status,
    method: value(f[AT.method]),
    done: value(f[AT.done]),
    path: value(f[AT.path]),
    ip: value(f[AT.ip]),
    xff: value(f[AT.xff]),
    sidh: value(f[AT.sidh]),
    scookie: value(f[AT.scookie]),
    sid: value(f[AT.sid]),
    rt,
    denial: current ? value(f[AT.denial]) : ''
  }
}

/** A number such as `1700000000.123`. */
function decimal (raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  return Number.isFinite(n) ? n : undefined
}

/** A whole number of at least 0, written in decimal. */
function count (raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/** A value as `escape=json` wrote it. @throws SyntaxError on an escape JSON does not have */
function value (raw: string | undefined): string {
  if (raw === undefined) return ''
  return raw.includes('\\') ? JSON.parse(`"${raw}"`) as string : raw
}

/** A line of the JSON object format of earlier versions. */
function fromJson (text: string): LogLine | undefined {
  const v: unknown = JSON.parse(text)
  if (typeof v !== 'object' || v === null) return undefined
  const o = v as Record<string, unknown>
  const line = { ...o, t: o.t ?? 0, done: o.done ?? '', rt: o.rt ?? 0, denial: '' } as Record<string, unknown>
  const ok = Number.isSafeInteger(line.bytes) && (line.bytes as number) >= 0 && Number.isSafeInteger(line.status) &&
    FIELDS.every(([name]) => NUMBERS.has(name) ? typeof line[name] === 'number' : typeof line[name] === 'string')
  return ok ? line as unknown as LogLine : undefined
}
