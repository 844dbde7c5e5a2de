//! blockhook-receiver (being written).
