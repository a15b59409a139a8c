/**
 * The metering library: pure TypeScript, no web framework, no database client.
 * Importable alone as `streammeter/meter`.
 */
export { FILE_TYPES, fileTypeIndex } from './file-type.ts'
export type { FileType } from './file-type.ts'
export type {
  DiscardedUsage, FailureDetail, OutboxEntry, OutboxItem, RenderedReport, StoreCounters, TrafficEvent, UsageDelta, UsagePolicy, UsageRecord
} from './types.ts'
export { isExpired, mergeDelta, unionCapped } from './usage-record.ts'
export type { MergeOutcome } from './usage-record.ts'
export { checkRendered, checkSplit, compareRecords, emptyCounters, outboxItem } from './usage-store.ts'
export { CLOCK_BACK_SLACK_MS, sealDecision } from './seal-schedule.ts'
export type { SealSchedule } from './seal-schedule.ts'
export type {
  CommittedLogCursor, ExpireResult, FlushResult, LogCursor, OutboxStats, SealRequest, SealResult, StoreDurability, UsageStore, UsageSummary
} from './usage-store.ts'
export { TrafficCollector } from './collector.ts'
export { policyOf } from './usage-policy.ts'
export type { CollectorDeps, CollectorState } from './collector.ts'
export { ManualClock, randomIds, systemClock } from './clock.ts'
export type { Clock, IdSource } from './clock.ts'
export { DeltaMap } from './delta-map.ts'
export { channels } from './diagnostics.ts'
export { silentLogger } from './logger.ts'
export type { MeterLogger } from './logger.ts'
export {
  MAX_TIMER_SECONDS, METER_DEFAULTS, REPORT_MAX_BYTES_MAX, REPORT_MAX_BYTES_MIN, REPORT_MAX_REJECTIONS_MAX, redactUrl, resolveMeterOptions
} from './options.ts'
export type { MeterOptions } from './options.ts'
export { formatUtc, renderReports, reportTotals, round2, trafficDetail, unixSeconds } from './report-builder.ts'
export type { ReportContext, ReportTotals, TrafficDetail, TrafficReport } from './report-builder.ts'
export { HttpReportTransport } from './report-transport.ts'
export type { DeliveryOutcome, HttpTransportOptions, ReportTransport } from './report-transport.ts'
export { Reporter, isLastingRefusal } from './reporter.ts'
export { splitReport } from './report-split.ts'
export type { DeliveryRun, ReporterOptions } from './reporter.ts'
export { nextAttemptDelayMs, retryAfterMs, retryDelayMs } from './backoff.ts'
export { buildTrafficStatus } from './traffic-status.ts'
export { outboxItemView, outboxView } from './outbox-view.ts'
export type { OutboxItemView, OutboxView } from './outbox-view.ts'
export type { InstanceCounters, TrafficStatus } from './traffic-status.ts'
