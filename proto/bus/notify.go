package bus

// Message headers beyond JetStream's own.

// HeaderRecorded marks an outcome published on OutcomeSubject that was read back for a repeat
// of the op (from its 503 record or the outcome journal) rather than decided for this request:
// ingest redrives a recorded 503 (DESIGN.md §4) and returns any other as it is.
const HeaderRecorded = "Pushgo-Recorded"
