/** The reference report receiver (`streammeter sink`). */
export { startSink } from './sink-server.ts'
export type { RunningSink, SinkOptions, SinkReportEvent, StoredReport } from './sink-server.ts'
