import type { FileType } from './file-type.ts'

/**
 * One finished response, as the server hands it to {@link TrafficCollector.record}.
 * Bytes are body bytes that reached the client socket.
 */
export interface TrafficEvent {
  /** The user the bytes are billed to. Events without a uid are not recorded. */
  uid: string
  /** Body bytes delivered; events with 0 bytes are not recorded. A safe, non-negative integer. */
  bytes: number
  /** One of the file types of a report's `file_types` (docs/report-format.md); anything else counts as `default`. */
  fileType: FileType | string
  /** Client IP (already normalised by the server). */
  ip?: string | undefined
  /** Session id (header, cookie or `sid` parameter). */
  sessionId?: string | undefined
  /** When the response finished, in ms since the epoch. @default clock.now() */
  time?: number | undefined
  /**
   * Requests this event counts: 1 for a response (the default), 0 for a
   * further piece of a response whose request an earlier piece counted. A
   * long response is recorded in pieces as its bytes go out, so that what a
   * crash can lose is bounded by the flush interval, even mid-download
   * (docs/metering.md, "Events"); its first piece counts the request.
   * @default 1
   */
  requests?: 0 | 1 | undefined
}

/**
 * What one process learned about one uid since its last flush. Stores merge
 * deltas into {@link UsageRecord}s.
 */
export interface UsageDelta {
  uid: string
  bytes: number
  requests: number
  /** Bytes per file type; the values sum to `bytes`. */
  fileTypes: Record<string, number>
  /** Distinct IPs seen, in order of first appearance, capped at `maxIps`. */
  ips: string[]
  /** Distinct session ids seen, in order of first appearance, capped at `maxSessions`. */
  sessions: string[]
  /** Time of the first event in this delta, ms since the epoch. */
  firstSeen: number
  /** Time of the last event in this delta, ms since the epoch. */
  lastSeen: number
}

/** A uid's usage in the current cycle, as the store holds it. */
export interface UsageRecord {
  uid: string
  bytes: number
  requests: number
  fileTypes: Record<string, number>
  ips: string[]
  sessions: string[]
  /** First byte of the cycle, ms since the epoch. */
  startTime: number
  /** Last activity of the cycle, ms since the epoch. */
  lastActivity: number
  /** Reached the threshold in this cycle; stays true until reported. */
  qualified: boolean
}

/** The rules every store applies to merged usage. Identical on every instance sharing a store. */
export interface UsagePolicy {
  /** Bytes a uid must reach in a cycle to be reported. 0 reports every byte. */
  minBytes: number
  /** Sub-threshold cycles older than this are discarded, in ms. */
  accumulatorTimeoutMs: number
  /** Distinct IPs kept per record. */
  maxIps: number
  /** Distinct session ids kept per record. */
  maxSessions: number
}

/** One undelivered report in the store's outbox. */
export interface OutboxEntry {
  /** Position in creation order (strictly increasing within a store). */
  seq: number
  reportId: string
  /** When the window was sealed, ms since the epoch. */
  createdAt: number
  /** The exact JSON body; every attempt sends these bytes. */
  body: string
  /** Number of uids and bytes in the report (for statistics). */
  uids: number
  bytes: number
  /** Failed attempts so far. */
  attempts: number
  lastError?: string | undefined
  lastAttemptAt?: number | undefined
  /** The receiver's HTTP status in the last failed attempt; absent when it did not answer (timeout, network). */
  lastStatus?: number | undefined
  /**
   * Refusals (a lasting 4xx) since the report was written or last put back by
   * hand; absent while there is none. At `TRAFFIC_REPORT_MAX_REJECTIONS` the
   * report is parked.
   */
  rejections?: number | undefined
  /** When the report was parked (ms since the epoch); absent while it waits for delivery. */
  parkedAt?: number | undefined
}

/** An outbox entry without its body, for listings (`streammeter outbox list`, `GET /api/outbox`). */
export type OutboxItem = Omit<OutboxEntry, 'body'> & {
  /** Size of the body in bytes (UTF-8): what the receiver is sent. */
  bodyBytes: number
}

/** What the reporter knows about a failed attempt besides its message. */
export interface FailureDetail {
  /** The receiver's HTTP status, when it answered. */
  status?: number | undefined
  /** A refusal that counts towards parking (a lasting 4xx). @default false */
  rejected?: boolean | undefined
}

/** A report rendered at seal time, before it is written to the outbox. */
export interface RenderedReport {
  reportId: string
  body: string
  uids: number
  bytes: number
}

/** Counters a store keeps for all instances that share it. They survive restarts. */
export interface StoreCounters {
  /** Usage cycles started (a uid's first byte after a seal or an expiry). */
  total_recorded_uids: number
  /**
   * Reports written to the outbox, halves of splits included, so that
   * `reports_created - reports_split` = sent + pending + parked + dropped.
   */
  reports_created: number
  /** Reports the endpoint accepted (2xx or 409). */
  total_reports_sent: number
  /** Bytes in accepted reports. */
  total_bytes_reported: number
  /** Failed delivery attempts (non-2xx/409, timeouts, connection errors). */
  reports_failed: number
  /** Sub-threshold accumulators discarded by expiry. */
  accumulator_cleanups: number
  /** Bytes in discarded accumulators. */
  bytes_discarded: number
  /** Windows sealed with at least one qualified uid. */
  windows_sealed: number
  /** Last accepted delivery, ms since the epoch (0 = never). */
  last_success_at: number
  /** Last failed delivery, ms since the epoch (0 = never). */
  last_error_at: number
  /** Message of the last failed delivery ('' = none). Never contains secrets. */
  last_error: string
  /** Reports split in two after the endpoint answered 413 (each split writes two reports and removes one). */
  reports_split: number
  /** Reports parked after `TRAFFIC_REPORT_MAX_REJECTIONS` refusals. */
  reports_parked: number
  /** Parked reports deleted for good (`streammeter outbox drop`). */
  reports_dropped: number
  /** Bytes of usage in the dropped reports: never billed. */
  reports_dropped_bytes: number
}

/** A discarded accumulator, reported so that nothing disappears silently. */
export interface DiscardedUsage {
  uid: string
  bytes: number
  startTime: number
}
