//! A message an event source received but could never turn into an event (not JSON, an unknown
//! merchant, a bad event type...): kept with the reason instead of being dropped, so an
//! operator can see it, fix the publisher and publish it again.

use crate::Timestamp;

/// One dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it came from, e.g. `nats:PAYMENTS`.
    pub source: String,
    /// Its id in the source (a JetStream stream sequence): one record per message, however
    /// often it is delivered.
    pub reference: String,
    /// Why it was refused, in the words `POST /v1/events` would use.
    pub reason: String,
    /// The message as received.
    pub body: Vec<u8>,
    /// When it was dead-lettered.
    pub at: Timestamp,
}
