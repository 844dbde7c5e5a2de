//! Prometheus metrics, one registry per `Application` (so tests running several apps in one
//! process read their own counters). Rendered at `/metrics` in the text exposition format.
//!
//! Cardinality is bounded: labels are outcomes and error classes, never endpoint or merchant ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use blockhook_core::QueueStats;

/// A label set with one `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// The label value.
    pub kind: String,
}

impl Kind {
    fn of(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
        }
    }
}

/// A label set with one `table` label: the outbox table a relay reads (bounded by the
/// configuration, never by traffic).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Table {
    /// The table, as configured (`schema.name` or `name`).
    pub table: String,
}

/// Every metric blockhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Events accepted by ingest (duplicates not counted).
    pub events_ingested: Counter,
    /// Deliveries reaching a decision, by `kind` = succeeded | retry_scheduled | failed | endpoint_disabled.
    pub deliveries: Family<Kind, Counter>,
    /// Attempts by `kind` = success | an error class.
    pub attempts: Family<Kind, Counter>,
    /// Attempt latency in seconds.
    pub attempt_seconds: Histogram,
    /// Ingest-to-acknowledgement latency of first attempts that succeeded, in seconds.
    pub delivery_lag_seconds: Histogram,
    /// Deliveries due now.
    pub queue_due: Gauge,
    /// Deliveries scheduled for later.
    pub queue_scheduled: Gauge,
    /// Deliveries leased by a worker.
    pub queue_in_flight: Gauge,
    /// Age of the oldest due delivery, in milliseconds.
    pub oldest_due_age_ms: Gauge,
    /// Endpoints whose latest attempts in this process failed, by streak bucket `kind` = 1 | 2-5 | 6+.
    pub failing_endpoints: Family<Kind, Gauge>,
    /// Requests this process is sending right now.
    pub in_flight_requests: Gauge,
    /// SQL statements this process's store has executed (round trips, for cost per event).
    pub store_statements: Gauge,
    /// HTTP connections open now (the API's side).
    pub http_connections_open: Gauge,
    /// HTTP connections over a cap, by `kind` = max_connections | max_connections_per_ip.
    pub http_connections_refused: Family<Kind, Counter>,
    /// Retention passes this process ran (one process at a time runs them).
    pub retention_passes: Counter,
    /// Outbox rows this process read (locked) from a gateway's table, by `table`.
    pub outbox_rows_read: Family<Table, Counter>,
    /// Outbox rows relayed into the store (duplicates of a crashed relay's rows included).
    pub outbox_rows_ingested: Family<Table, Counter>,
    /// Outbox rows moved to the dead-letter table.
    pub outbox_rows_dead_lettered: Family<Table, Counter>,
    /// Age in seconds of the oldest row still in the outbox (0 when empty).
    pub outbox_lag_seconds: Family<Table, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// JetStream messages this process fetched, by `stream` (redeliveries included).
    pub nats_messages_read: Family<Stream, Counter>,
    /// JetStream messages stored as events (or found already stored) and acknowledged.
    pub nats_messages_ingested: Family<Stream, Counter>,
    /// JetStream messages dead-lettered and terminated.
    pub nats_messages_dead_lettered: Family<Stream, Counter>,
    /// Messages the consumer has not delivered yet, as the last fetched one reported.
    pub nats_pending_messages: Family<Stream, Gauge>,
}

/// A label set with one `stream` label: the JetStream stream a source reads (bounded by the
/// configuration).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Stream {
    /// The stream's name.
    pub stream: String,
}

/// An open connection, counted in `http_connections_open` until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("blockhook");
        let m = Self {
            events_ingested: Counter::default(),
            deliveries: Family::default(),
            attempts: Family::default(),
            attempt_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            delivery_lag_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            queue_due: Gauge::default(),
            queue_scheduled: Gauge::default(),
            queue_in_flight: Gauge::default(),
            oldest_due_age_ms: Gauge::default(),
            failing_endpoints: Family::default(),
            in_flight_requests: Gauge::default(),
            store_statements: Gauge::default(),
            http_connections_open: Gauge::default(),
            http_connections_refused: Family::default(),
            retention_passes: Counter::default(),
            outbox_rows_read: Family::default(),
            outbox_rows_ingested: Family::default(),
            outbox_rows_dead_lettered: Family::default(),
            outbox_lag_seconds: Family::default(),
            nats_messages_read: Family::default(),
            nats_messages_ingested: Family::default(),
            nats_messages_dead_lettered: Family::default(),
            nats_pending_messages: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nats_messages_read",
            "JetStream messages fetched (redeliveries included)",
            m.nats_messages_read.clone(),
        );
        registry.register(
            "nats_messages_ingested",
            "JetStream messages stored as events and acknowledged",
            m.nats_messages_ingested.clone(),
        );
        registry.register(
            "nats_messages_dead_lettered",
            "JetStream messages dead-lettered and terminated",
            m.nats_messages_dead_lettered.clone(),
        );
        registry.register(
            "nats_pending_messages",
            "JetStream messages not yet delivered to the consumer",
            m.nats_pending_messages.clone(),
        );
        registry.register(
            "outbox_rows_read",
            "Outbox rows read from a gateway's table",
            m.outbox_rows_read.clone(),
        );
        registry.register(
            "outbox_rows_ingested",
            "Outbox rows relayed into the store",
            m.outbox_rows_ingested.clone(),
        );
        registry.register(
            "outbox_rows_dead_lettered",
            "Outbox rows moved to the dead-letter table",
            m.outbox_rows_dead_lettered.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest row still in the outbox",
            m.outbox_lag_seconds.clone(),
        );
        registry.register(
            "retention_passes",
            "Retention passes run by this process",
            m.retention_passes.clone(),
        );
        registry.register(
            "events_ingested",
            "Events accepted by ingest",
            m.events_ingested.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery decisions by kind",
            m.deliveries.clone(),
        );
        registry.register("attempts", "Attempts by result", m.attempts.clone());
        registry.register(
            "attempt_duration_seconds",
            "Attempt latency",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Ingest to acknowledgement, first-attempt successes",
            m.delivery_lag_seconds.clone(),
        );
        registry.register("queue_due", "Deliveries due now", m.queue_due.clone());
        registry.register(
            "queue_scheduled",
            "Deliveries scheduled later",
            m.queue_scheduled.clone(),
        );
        registry.register(
            "queue_in_flight",
            "Deliveries leased by workers",
            m.queue_in_flight.clone(),
        );
        registry.register(
            "oldest_due_age_milliseconds",
            "Age of the oldest due delivery",
            m.oldest_due_age_ms.clone(),
        );
        registry.register(
            "failing_endpoints",
            "Endpoints whose latest attempts failed, by streak length",
            m.failing_endpoints.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests this process is sending",
            m.in_flight_requests.clone(),
        );
        registry.register(
            "store_statements",
            "SQL statements executed by this process's store",
            m.store_statements.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open on the API's listener",
            m.http_connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections over a cap (answered health probes only, or closed)",
            m.http_connections_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.http_connections_open.inc();
        OpenConnection(self.http_connections_open.clone())
    }

    /// Counts a connection over a cap.
    pub fn connection_refused(&self, cap: &str) {
        self.http_connections_refused
            .get_or_create(&Kind::of(cap))
            .inc();
    }

    /// Counts a delivery decision.
    pub fn delivery(&self, kind: &str) {
        self.deliveries.get_or_create(&Kind::of(kind)).inc();
    }

    /// Counts an attempt result.
    pub fn attempt(&self, kind: &str, seconds: f64) {
        self.attempts.get_or_create(&Kind::of(kind)).inc();
        self.attempt_seconds.observe(seconds);
    }

    /// Sets the failing-endpoint gauges from streak lengths.
    pub fn set_failing(&self, streaks: impl Iterator<Item = u32>) {
        let (mut one, mut few, mut many) = (0i64, 0i64, 0i64);
        for s in streaks {
            match s {
                0 => {}
                1 => one += 1,
                2..=5 => few += 1,
                _ => many += 1,
            }
        }
        self.failing_endpoints
            .get_or_create(&Kind::of("1"))
            .set(one);
        self.failing_endpoints
            .get_or_create(&Kind::of("2-5"))
            .set(few);
        self.failing_endpoints
            .get_or_create(&Kind::of("6+"))
            .set(many);
    }

    /// Updates the queue gauges.
    pub fn set_queue(&self, q: &QueueStats, now_ms: i64) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_due.set(clamp(q.due));
        self.queue_scheduled.set(clamp(q.scheduled));
        self.queue_in_flight.set(clamp(q.in_flight));
        self.oldest_due_age_ms
            .set(q.oldest_due_at.map_or(0, |t| (now_ms - t.ms()).max(0)));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
