// The /monitor page: one ES module, no build step. Reads the live feed
// (/monitor/api/events, Server-Sent Events) and renders it. Every value that
// comes from clients (uid, path, IP, session id) and every server string is
// put in the page with textContent: nothing here parses HTML.
import UPlot from '/monitor/assets/uPlot.esm.js'

/** Samples kept on the page: 15 minutes at one a second, as the server keeps. */
const HISTORY = 900
const FILE_TYPE_COLORS = {
  m3u8: '#1f6feb',
  ts: '#1a7f37',
  m4s: '#8250df',
  mp4: '#bf3989',
  key: '#9a6700',
  vtt: '#0a7ea4',
  aac: '#cf222e',
  static: '#6e7781',
  default: '#3d444d'
}

const $ = (id) => document.getElementById(id)

// ---- formatting ------------------------------------------------------------

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** 1536 → "1.50 KiB". */
function bytes (n) {
  if (n === null || n === undefined) return '–'
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${UNITS[u]}`
}

function count (n) {
  return n === null || n === undefined ? '–' : n.toLocaleString('en-US')
}

/** Seconds as "4 m 05 s". */
function duration (s) {
  if (s === null || s === undefined) return '–'
  const t = Math.max(0, Math.round(s))
  if (t < 60) return `${t} s`
  const m = Math.floor(t / 60)
  if (m < 60) return `${m} m ${String(t % 60).padStart(2, '0')} s`
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`
}

/** Unix seconds as a local time and how long ago. */
function when (unix) {
  if (unix === null || unix === undefined) return 'never'
  const d = new Date(unix * 1000)
  return `${d.toLocaleTimeString()} (${duration(Date.now() / 1000 - unix)} ago)`
}

// ---- DOM helpers (text only) ------------------------------------------------

function setText (id, text, cls) {
  const el = $(id)
  el.textContent = text
  if (cls !== undefined) el.className = cls
}

/** A table cell holding `text` as text; `title` shows the full value on hover. */
function cell (text, cls) {
  const td = document.createElement('td')
  td.textContent = text
  td.title = text
  if (cls) td.className = cls
  return td
}

function fillTable (tbodyId, emptyId, items, row) {
  const rows = items.map(row)
  $(tbodyId).replaceChildren(...rows)
  $(emptyId).classList.toggle('hidden', rows.length > 0)
}

// ---- charts ------------------------------------------------------------------

const history = { t: [], bytes: [], requests: {} }

function makeChart (id, series, unit) {
  const el = $(id)
  const opts = {
    width: Math.max(300, el.clientWidth),
    height: 220,
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [{}, { size: 80, values: (u, vals) => vals.map(unit === 'bytes/s' ? (v) => `${bytes(v)}/s` : (v) => `${v}/s`) }],
    series: [{}, ...series]
  }
  return new UPlot(opts, [[], ...series.map(() => [])], el)
}

let bytesChart
let requestsChart
let fileTypes = []

function initCharts (types) {
  fileTypes = types
  for (const t of types) history.requests[t] ??= []
  bytesChart = makeChart('chart-bytes', [{ label: 'bytes/s', stroke: '#1f6feb', fill: 'rgba(31,111,235,0.12)', width: 1.5, value: (u, v) => bytes(v) }], 'bytes/s')
  requestsChart = makeChart('chart-requests', types.map((t) => ({ label: t, stroke: FILE_TYPE_COLORS[t] ?? '#000', width: 1.5 })), 'req/s')
  window.addEventListener('resize', () => {
    for (const [chart, id] of [[bytesChart, 'chart-bytes'], [requestsChart, 'chart-requests']]) {
      chart.setSize({ width: Math.max(300, $(id).clientWidth), height: 220 })
    }
  })
}

/** Append the samples newer than the last one held; keep 15 minutes. */
function addHistory (points) {
  if (bytesChart === undefined) initCharts(Object.keys(points.requests_per_second))
  const last = history.t.length > 0 ? history.t[history.t.length - 1] : -Infinity
  points.t.forEach((t, i) => {
    if (t <= last) return
    history.t.push(t)
    history.bytes.push(points.bytes_per_second[i])
    for (const type of fileTypes) history.requests[type].push(points.requests_per_second[type]?.[i] ?? 0)
  })
  const extra = history.t.length - HISTORY
  if (extra > 0) {
    history.t.splice(0, extra)
    history.bytes.splice(0, extra)
    for (const type of fileTypes) history.requests[type].splice(0, extra)
  }
  bytesChart.setData([history.t, history.bytes])
  requestsChart.setData([history.t, ...fileTypes.map((type) => history.requests[type])])
  // For tests and curious operators: how many points the charts hold.
  const nonzeroBytes = history.bytes.filter((v) => v > 0).length
  const nonzeroRequests = history.t.filter((_, i) => fileTypes.some((type) => history.requests[type][i] > 0)).length
  $('chart-bytes').dataset.points = String(history.t.length)
  $('chart-bytes').dataset.nonzero = String(nonzeroBytes)
  $('chart-requests').dataset.points = String(history.t.length)
  $('chart-requests').dataset.nonzero = String(nonzeroRequests)
  setText('rate-now', history.bytes.length > 0 ? `now ${bytes(history.bytes[history.bytes.length - 1])}/s` : '')
}

// ---- panels ------------------------------------------------------------------

function renderTransfers (at) {
  // The nginx engine: nginx streams the responses; each is known here only once finished.
  $('transfer-empty').textContent = at.visible === false
    ? 'Not visible with the nginx engine: nginx streams the responses, and each is metered when nginx has finished it (docs/engines.md).'
    : 'No response is being streamed.'
  setText('transfer-count', at.visible === false ? '–' : count(at.count))
  fillTable('transfer-rows', 'transfer-empty', at.transfers, (t) => {
    const tr = document.createElement('tr')
    const progress = document.createElement('td')
    if (t.progress !== null) {
      const bar = document.createElement('progress')
      bar.max = 1
      bar.value = t.progress
      bar.title = `${(t.progress * 100).toFixed(1)} %`
      progress.append(bar)
    } else {
      progress.textContent = 'unknown length'
    }
    const bytesCell = cell(bytes(t.bytes), 'num')
    bytesCell.dataset.bytes = String(t.bytes)
    tr.append(cell(t.uid ?? '(none)'), cell(t.path), cell(t.ip), cell(t.session_id ?? ''), bytesCell, cell(`${bytes(t.speed)}/s`, 'num'), progress)
    tr.dataset.uid = t.uid ?? ''
    return tr
  })
}

let nextSealAt
function renderWindow (w) {
  $('collector-off').classList.toggle('hidden', w !== null)
  if (w === null) {
    nextSealAt = undefined
    return
  }
  setText('qualified', count(w.qualified_uids))
  setText('pending', count(w.pending_accumulator_uids))
  setText('window-bytes', bytes(w.total_bytes))
  setText('threshold', bytes(w.min_bytes_threshold))
  setText('discarded', bytes(w.bytes_discarded))
  setText('cleanups', count(w.accumulator_cleanups))
  nextSealAt = Date.now() + w.next_report_in_seconds * 1000
  tickCountdown()
  fillTable('top-rows', 'top-empty', w.top_uids, (u) => {
    const tr = document.createElement('tr')
    const types = Object.entries(u.file_types).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${bytes(v)}`).join(', ')
    const bytesCell = cell(bytes(u.bytes), 'num')
    bytesCell.dataset.bytes = String(u.bytes)
    bytesCell.title = `${count(u.bytes)} bytes`
    const state = cell(u.qualified ? 'qualified' : 'pending', u.qualified ? 'ok' : 'dim')
    tr.append(cell(u.uid), bytesCell, cell(count(u.requests), 'num'), cell(types), cell(count(u.unique_ips), 'num'), cell(count(u.unique_sessions), 'num'), state)
    tr.dataset.uid = u.uid
    return tr
  })
}

function tickCountdown () {
  setText('countdown', nextSealAt === undefined ? '–' : duration((nextSealAt - Date.now()) / 1000))
}

function renderDelivery (d) {
  if (d === null) return
  setText('report-url', d.report_url ?? 'not configured (reports stay in the outbox)')
  setText('outbox', `${count(d.pending)} report(s), ${bytes(d.pending_bytes)}`, d.pending > 0 ? 'num warn' : 'num')
  // Parked: refused by the endpoint, not billed until put back (streammeter outbox retry).
  setText('parked', d.parked > 0
    ? `${count(d.parked)} report(s), ${bytes(d.parked_bytes)}: refused by the endpoint; see streammeter outbox list`
    : 'none', d.parked > 0 ? 'num bad' : 'num dim')
  setText('oldest', d.oldest_age_seconds === null ? '–' : duration(d.oldest_age_seconds), d.oldest_age_seconds > 600 ? 'num bad' : 'num')
  setText('last-success', when(d.last_success_at), d.last_success_at === null ? 'dim' : 'ok')
  setText('last-error', d.last_error === null ? 'none' : `${d.last_error} — ${when(d.last_error_at)}`, d.last_error === null ? 'dim' : 'bad')
  setText('failures', count(d.reports_failed), d.reports_failed > 0 ? 'num warn' : 'num')
  setText('sent', count(d.total_reports_sent))
  setText('reported', bytes(d.total_bytes_reported))
}

function renderStore (s) {
  setText('store-kind', s.kind)
  const healthy = s.ok && s.available !== false
  setText('store-health', healthy ? 'available' : `unavailable${s.error ? ` (${s.error})` : ''}`, healthy ? 'ok' : 'bad')
  setText('store-latency', `${s.latency_ms.toFixed(2)} ms`)
  setText('store-reporter', s.is_reporter === null
    ? 'collector disabled'
    : s.is_reporter ? 'this instance holds the reporter lease' : 'another instance holds the reporter lease')
}

/** Refused requests: the counts by reason since start, and the last few (no token or uid is sent). */
function renderDenials (d) {
  $('denials').classList.toggle('hidden', d === null)
  if (d === null) return
  const total = Object.values(d.counts).reduce((a, b) => a + b, 0)
  setText('denial-counts', total === 0
    ? 'none since start'
    : Object.entries(d.counts).filter(([, n]) => n > 0).map(([reason, n]) => `${reason.replaceAll('_', ' ')} ${count(n)}`).join(', '),
  total === 0 ? 'dim' : 'warn')
  fillTable('denial-rows', 'denial-empty', d.recent, (r) => {
    const tr = document.createElement('tr')
    tr.append(cell(new Date(r.time).toLocaleTimeString()), cell(r.reason.replaceAll('_', ' ')), cell(String(r.status), 'num'), cell(r.path), cell(r.ip))
    return tr
  })
}

function render (doc) {
  setText('worker', doc.worker_id)
  setText('version', doc.version)
  setText('state', doc.state, doc.state === 'running' ? 'ok' : 'warn')
  setText('updated', new Date(doc.generated_at).toLocaleTimeString())
  addHistory(doc.throughput)
  renderTransfers(doc.active_transfers)
  renderWindow(doc.window)
  renderDelivery(doc.delivery)
  renderStore(doc.store)
  renderDenials(doc.denials ?? null)
}

// ---- live feed -----------------------------------------------------------------

function connect () {
  const feed = new EventSource('/monitor/api/events')
  feed.addEventListener('open', () => setText('feed', 'live', 'ok'))
  feed.addEventListener('snapshot', (e) => {
    setText('feed', 'live', 'ok')
    render(JSON.parse(e.data))
  })
  feed.addEventListener('failure', (e) => setText('feed', `server could not read its figures (${JSON.parse(e.data).error})`, 'bad'))
  // EventSource reconnects by itself (after the server's `retry`).
  feed.addEventListener('error', () => setText('feed', feed.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting', 'warn'))
}

// ---- demo player ---------------------------------------------------------------

let hls
async function checkDemo () {
  const link = await (await fetch('/monitor/api/demo')).json()
  setText('demo-uid', link.uid)
  if (!link.available) {
    setText('demo-status', link.reason, 'warn')
    return
  }
  $('demo-play').disabled = false
  setText('demo-status', 'plays the demo stream through this proxy; watch the demo uid above', 'dim')
}

async function playDemo () {
  const video = $('demo-video')
  const link = await (await fetch('/monitor/api/demo')).json() // a freshly signed URL each time
  if (!link.available) {
    setText('demo-status', link.reason, 'warn')
    return
  }
  hls?.destroy()
  hls = undefined
  const { default: Hls } = await import('/monitor/assets/hls.mjs')
  if (Hls.isSupported()) {
    // No worker: the page's CSP allows none, and the demo stream is tiny.
    hls = new Hls({ enableWorker: false })
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) setText('demo-status', `player error: ${data.type} / ${data.details}`, 'bad')
    })
    hls.loadSource(link.url)
    hls.attachMedia(video)
  } else if (video.canPlayType('application/vnd.apple.mpegurl') !== '') {
    video.src = link.url // Safari plays HLS natively
  } else {
    setText('demo-status', 'this browser can play HLS neither through Media Source Extensions nor natively', 'bad')
    return
  }
  video.muted = true
  setText('demo-status', 'playing…', 'dim')
  try {
    await video.play()
  } catch (err) {
    setText('demo-status', `could not start playback: ${err.name}`, 'bad')
  }
}

$('demo-play').addEventListener('click', () => { playDemo().catch((err) => setText('demo-status', `could not start playback: ${err.message}`, 'bad')) })
checkDemo().catch(() => setText('demo-status', 'could not ask the server for the demo URL', 'bad'))
setInterval(tickCountdown, 250)
connect()
