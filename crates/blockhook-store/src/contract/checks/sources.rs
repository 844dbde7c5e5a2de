//! Event sources: dead letters are kept byte for byte, once per (source, reference), newest
//! first.

use blockhook_core::{DeadLetter, StoreRef};

use crate::contract::fixtures::t;

/// A redelivered message is recorded once; listing is newest first and limited.
pub async fn dead_letters_are_kept_once_per_message(store: StoreRef) {
    let letter = |reference: &str, secs: i64| DeadLetter {
        source: "nats:PAYMENTS".to_owned(),
        reference: reference.to_owned(),
        reason: "payload: not a JSON object".to_owned(),
        body: vec![0, 159, 146, 150, b'{'],
        at: t(secs),
    };
    assert!(store.dead_letter(&letter("7", 1)).await.unwrap());
    assert!(
        !store.dead_letter(&letter("7", 2)).await.unwrap(),
        "a redelivery is not a second dead letter"
    );
    let mut other_source = letter("7", 3);
    other_source.source = "nats:PAYOUTS".to_owned();
    assert!(store.dead_letter(&other_source).await.unwrap());
    assert!(store.dead_letter(&letter("9", 4)).await.unwrap());

    let all = store.dead_letters(10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], letter("9", 4), "newest first, every field kept");
    assert_eq!(all[1], other_source);
    assert_eq!(all[2], letter("7", 1), "the first record stays");
    assert_eq!(store.dead_letters(1).await.unwrap().len(), 1);
}
