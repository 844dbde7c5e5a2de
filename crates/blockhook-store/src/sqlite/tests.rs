//! Behaviour the contract suite cannot reach: URL forms, a full or read-only disk, the event
//! cache's miss path, the writer's `synchronous` switching, group commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod locations {
    use std::path::PathBuf;

    use crate::sqlite::files::{Location, location};

    #[test]
    fn locations() {
        let file = |p: &str| Some(Location::File(PathBuf::from(p)));
        assert_eq!(location("sqlite://data/bh.db").ok(), file("data/bh.db"));
        assert_eq!(
            location("sqlite:///var/lib/bh.db?mode=rwc").ok(),
            file("/var/lib/bh.db")
        );
        assert_eq!(location("sqlite:bh.db").ok(), file("bh.db"));
        assert_eq!(location("/tmp/x/bh.db").ok(), file("/tmp/x/bh.db"));
        assert_eq!(location("sqlite::memory:").ok(), Some(Location::Memory));
        assert_eq!(location(":memory:").ok(), Some(Location::Memory));
        assert!(location("sqlite://").is_err());
    }
}

pub(super) mod failures {
    //! What the store does when the disk misbehaves, and paths the contract suite cannot reach
    //! (the event cache's miss path, the writer's `synchronous` switching).
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use blockhook_core::{
        ClaimRequest, EndpointUrl, EventFilter, EventType, ExtraHeaders, NewEvent, Payload,
        SealedSecret, SigningMode, SuccessPolicy,
    };
    use bytes::Bytes;

    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use blockhook_core::{
        Endpoint, EndpointId, Endpoints, Error, EventId, Events, Maintenance, MerchantId,
        MerchantStatus, Merchants, NewMerchant, Queue, Timestamp,
    };

    use crate::sqlite::db::SqliteStore;
    use crate::{SqliteSync, StoreOptions};

    pub(in crate::sqlite) const T0: Timestamp = Timestamp::from_ms(1_700_000_000_000);

    async fn open_at(path: &Path, sync: SqliteSync) -> SqliteStore {
        let opts = StoreOptions {
            sqlite_sync: sync,
            max_connections: 2,
            ..Default::default()
        };
        SqliteStore::open(&path.to_string_lossy(), &opts)
            .await
            .unwrap()
    }

    /// A merchant with one endpoint taking every event.
    pub(in crate::sqlite) async fn tenant(store: &SqliteStore) -> MerchantId {
        let m = NewMerchant::parse(MerchantId::generate(), "m", T0).unwrap();
        store.create_merchant(&m).await.unwrap();
        let ep = Endpoint {
            id: EndpointId::generate(),
            merchant_id: m.id.clone(),
            url: EndpointUrl::parse("https://r.example/h", false).unwrap(),
            description: None,
            filter: EventFilter::all(),
            signing_mode: SigningMode::Sorted,
            success_policy: SuccessPolicy::Exactly200,
            headers: ExtraHeaders::default(),
            rate_limit: None,
            label: None,
            enabled: true,
            disabled_reason: None,
            secret: SealedSecret::from_stored(vec![1; 8]),
            previous_secret: None,
            created_at: T0,
            updated_at: T0,
            ordering: Default::default(),
        };
        store.create_endpoint(&ep).await.unwrap();
        m.id
    }

    fn events(m: &MerchantId, n: usize, size: usize) -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent {
                id: EventId::generate(),
                merchant_id: m.clone(),
                event_type: EventType::parse("Payment").unwrap(),
                payload: Payload::from_trusted(Bytes::from(format!(
                    r#"{{"i":{i},"pad":"{}"}}"#,
                    "x".repeat(size)
                ))),
                idempotency_key: None,
                ordering_key: None,
                created_at: T0,
                search_keys: Vec::new(),
            })
            .collect()
    }

    /// A fresh store (`synchronous = FULL`) in its own directory, with `n` (at most 100) events
    /// of one tenant ingested and claimed.
    async fn claimed(
        n: usize,
    ) -> (
        tempfile::TempDir,
        Arc<SqliteStore>,
        MerchantId,
        Vec<blockhook_core::Claim>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_at(&dir.path().join("bh.db"), SqliteSync::Full).await);
        let m = tenant(&store).await;
        store.ingest(&events(&m, n, 10)).await.unwrap();
        let claims = store.claim_due(&claim_req(100)).await.unwrap();
        assert_eq!(claims.len(), n);
        (dir, store, m, claims)
    }

    fn claim_req(max: u32) -> ClaimRequest {
        ClaimRequest {
            now: T0 + Duration::from_secs(1),
            max,
            lease_until: T0 + Duration::from_secs(31),
            per_endpoint_max: max,
            exclude: Vec::new(),
            new_first: false,
        }
    }

    /// Runs a pragma on the sqlx writer connection (management writes).
    async fn sqlx_writer_pragma(store: &SqliteStore, sql: &str) {
        let mut conn = store.writer().acquire().await.unwrap();
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }

    /// Runs a pragma on the writer thread's connection (the one ingest, claims and finishes
    /// use) and returns its value, if any.
    async fn writer_pragma(store: &SqliteStore, sql: &str) -> i64 {
        let sql = sql.to_owned();
        store
            .on_writer_thread(move |conn| {
                let mut stmt = conn.prepare(&sql).unwrap();
                let mut rows = stmt.query([]).unwrap();
                match rows.next().unwrap() {
                    Some(row) => row.get::<_, i64>(0).unwrap_or(0),
                    None => 0,
                }
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_checkpoints_at_a_size_the_free_space_allows() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        store.ingest(&events(&m, 3, 10)).await.unwrap();
        let set = writer_pragma(&store, "PRAGMA wal_autocheckpoint").await;
        let fs = rustix::fs::statvfs(dir.path()).unwrap();
        let expected = crate::sqlite::checkpoints::pages_for(fs.f_bavail * fs.f_frsize, 8192);
        // The free space moves a little with whatever else runs on the machine.
        let near = |a: i64, b: u32| (a - i64::from(b)).abs() <= i64::from(b) / 20 + 1;
        assert!(
            near(set, expected),
            "wal_autocheckpoint {set}, a quarter of the free space is {expected} pages"
        );
        assert_ne!(
            set, 1000,
            "not SQLite's default unless the free space says so"
        );
    }

    #[tokio::test]
    async fn full_disk_is_unavailable_and_the_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        // Cap the file at its current size: the next batch cannot fit (SQLITE_FULL).
        let pages = writer_pragma(&store, "PRAGMA page_count").await;
        writer_pragma(&store, &format!("PRAGMA max_page_count = {pages}")).await;
        let batch = events(&m, 200, 2000);
        match store.ingest(&batch).await {
            Err(Error::Unavailable(msg)) => assert!(msg.contains("full"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Space comes back (the failed transaction replaced the writer connection, see
        // `writer::Session::transaction`, and the new one has no cap; lifting it again is harmless): nothing
        // half-written remains, and the store writes again.
        writer_pragma(&store, "PRAGMA max_page_count = 1073741823").await;
        assert!(store.get_event(&m, &batch[0].id).await.is_err());
        let done = store.ingest(&batch).await.unwrap();
        assert_eq!(done.len(), 200);
        assert_eq!(store.claim_due(&claim_req(500)).await.unwrap().len(), 200);
    }

    #[tokio::test]
    async fn read_only_writer_is_unavailable_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await;
        let m = tenant(&store).await;
        // A writer connection that cannot write, like one SQLite opened read-only while the
        // data directory was read-only.
        writer_pragma(&store, "PRAGMA query_only = ON").await;
        sqlx_writer_pragma(&store, "PRAGMA query_only = ON").await;
        // A single statement outside a transaction (sqlx writer): refused, the connection kept.
        let r = store
            .set_merchant_status(&m, MerchantStatus::Suspended)
            .await;
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
        // A failed transaction on the writer thread: refused, and its connection is discarded
        // (`writer::Session::transaction`)...
        let r = store.ingest(&events(&m, 3, 10)).await;
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
        // ...so the next one is a fresh, writable connection, with nobody turning anything back.
        assert_eq!(writer_pragma(&store, "PRAGMA query_only").await, 0);
        sqlx_writer_pragma(&store, "PRAGMA query_only = OFF").await;
        assert_eq!(store.ingest(&events(&m, 3, 10)).await.unwrap().len(), 3);
        store
            .set_merchant_status(&m, MerchantStatus::Suspended)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn claims_read_payloads_back_when_the_cache_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bh.db");
        let first = open_at(&path, SqliteSync::Normal).await;
        let m = tenant(&first).await;
        let batch = events(&m, 5, 100);
        first.ingest(&batch).await.unwrap();
        // A second store on the same file has an empty cache: payloads come from the database,
        // one shared buffer per event.
        let second = open_at(&path, SqliteSync::Normal).await;
        let claims = second.claim_due(&claim_req(10)).await.unwrap();
        assert_eq!(claims.len(), 5);
        for c in &claims {
            let ev = batch.iter().find(|e| e.id == c.event_id).unwrap();
            assert_eq!(c.payload.bytes(), ev.payload.bytes());
            assert_eq!(c.event_type.as_str(), "Payment");
            assert_eq!(c.event_created_at, T0);
        }
    }

    #[tokio::test]
    async fn fan_out_shares_one_payload_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await;
        let m = tenant(&store).await;
        let mut second = store
            .list_endpoints(&m, None, 10)
            .await
            .unwrap()
            .data
            .remove(0);
        second.id = EndpointId::generate();
        store.create_endpoint(&second).await.unwrap();
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        let claims = store.claim_due(&claim_req(10)).await.unwrap();
        assert_eq!(claims.len(), 2);
        assert_eq!(
            claims[0].payload.bytes().as_ptr(),
            claims[1].payload.bytes().as_ptr()
        );
    }

    #[tokio::test]
    async fn lease_commits_relax_sync_and_durable_writes_restore_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            2,
            "FULL as configured"
        );
        store.ingest(&events(&m, 2, 10)).await.unwrap();
        assert_eq!(store.claim_due(&claim_req(10)).await.unwrap().len(), 2);
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            1,
            "NORMAL after a claim"
        );
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            2,
            "FULL again"
        );
    }

    /// The point of leasing at insert: with `new_first` a hand-off runs exactly the statements
    /// of a plain ingest (no claim query, no second write of the rows), and its claims are
    /// leased like a claim's: not claimable again until their lease expires.
    #[tokio::test]
    async fn a_new_first_hand_off_costs_no_statement_beyond_the_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        // Warm: the first ingest reads the endpoint into the cache.
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        assert_eq!(store.claim_due(&claim_req(10)).await.unwrap().len(), 1);

        let before = store.statements();
        let waiting = store.ingest(&events(&m, 1, 10)).await.unwrap();
        let plain = store.statements() - before;

        let req = ClaimRequest {
            new_first: true,
            ..claim_req(10)
        };
        let before = store.statements();
        let (ingested, handed) = store
            .ingest_and_claim(&events(&m, 1, 10), &req)
            .await
            .unwrap();
        let hand_off = store.statements() - before;
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].event_id, ingested[0].event_id);
        assert_eq!(
            hand_off, plain,
            "a hand-off leasing at insert runs the ingest's statements and no more"
        );

        let old_way = ClaimRequest {
            new_first: false,
            ..claim_req(10)
        };
        let before = store.statements();
        let (_, taken) = store
            .ingest_and_claim(&events(&m, 1, 10), &old_way)
            .await
            .unwrap();
        assert!(
            store.statements() - before > plain,
            "the claim in the ingest's transaction costs statements of its own"
        );
        assert_eq!(
            taken[0].event_id, waiting[0].event_id,
            "without new_first, the oldest due first: the plain ingest's delivery"
        );
        assert_eq!(taken.len(), 2);

        // Every delivery is leased now, the handed one included, until its lease expires.
        assert!(store.claim_due(&claim_req(10)).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ingests_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_at(&dir.path().join("bh.db"), SqliteSync::Full).await);
        let m = tenant(&store).await;
        let before = store.statements();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (store, batch) = (Arc::clone(&store), events(&m, 1, 10));
                tokio::spawn(
                    async move { store.ingest(&batch).await.map(|r| r[0].event_id.clone()) },
                )
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap());
        }
        for id in &ids {
            assert!(store.get_event(&m, id).await.is_ok());
        }
        // Alone, each call would be BEGIN, targets, two INSERTs, COMMIT and a pragma at most.
        let used = store.statements() - before - 200; // minus the 200 get_event reads
        assert!(
            used < 600,
            "{used} statements for 200 single-event ingests: no grouping?"
        );
        assert_eq!(store.claim_due(&claim_req(500)).await.unwrap().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_batch_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await);
        let m = tenant(&store).await;
        let existing = events(&m, 1, 10);
        store.ingest(&existing).await.unwrap();

        // Hold the writer so that the batches queue up and are taken as one group.
        let held = store.writer().acquire().await.unwrap();
        let send = |batch: Vec<NewEvent>| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.ingest(&batch).await })
        };
        let warmup = send(events(&m, 1, 10)); // taken alone while the writer is held
        tokio::time::sleep(Duration::from_millis(50)).await;
        let good = events(&m, 3, 10);
        let mut clash = events(&m, 2, 10);
        clash[1].id = existing[0].id.clone();
        let stranger = events(&MerchantId::generate(), 1, 10);
        let tasks = [
            send(good.clone()),
            send(clash.clone()),
            send(stranger),
            send(events(&m, 2, 10)),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);

        assert!(warmup.await.unwrap().is_ok());
        let [good_r, clash_r, stranger_r, other_r] = tasks;
        assert_eq!(good_r.await.unwrap().unwrap().len(), 3);
        assert!(matches!(clash_r.await.unwrap(), Err(Error::Conflict(_))));
        assert!(matches!(
            stranger_r.await.unwrap(),
            Err(Error::NotFound("merchant"))
        ));
        assert_eq!(other_r.await.unwrap().unwrap().len(), 2);
        assert!(store.get_event(&m, &good[0].id).await.is_ok());
        assert!(
            store.get_event(&m, &clash[0].id).await.is_err(),
            "the clashing batch is all or nothing"
        );
        // 1 existing + 1 warm-up + 3 good + 2 other.
        assert_eq!(store.claim_due(&claim_req(100)).await.unwrap().len(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_finishes_answer_each_caller() {
        use blockhook_core::{Completion, LeaseToken};

        let (_dir, store, m, claims) = claimed(20).await;
        // Queue every call while the writer is held, so they are taken as groups.
        let held = store.writer().acquire().await.unwrap();
        let mut calls = Vec::new();
        let mut send = |done: Vec<Completion>| {
            let store = Arc::clone(&store);
            calls.push(tokio::spawn(async move {
                store.finish(done.into(), T0).await.unwrap()
            }));
        };
        send(vec![completion(
            &claims[0],
            LeaseToken(claims[0].lease.0 ^ 1),
        )]); // stale
        for c in &claims {
            send(vec![completion(c, c.lease)]);
        }
        send(vec![completion(&claims[1], claims[1].lease)]); // repeated
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        let mut counts = Vec::new();
        for call in calls {
            counts.push(call.await.unwrap());
        }
        assert_eq!(counts[0], 0, "stale lease");
        // claims[1] was completed twice with its live lease: whichever call came first (tasks
        // enqueue in no fixed order) applied, the other found it finished.
        assert_eq!(counts[2] + counts[21], 1, "{counts:?}");
        let others = counts[1..21].iter().enumerate().filter(|(i, _)| *i != 1);
        assert!(others.clone().all(|(_, &n)| n == 1), "{counts:?}");
        for c in &claims {
            assert_eq!(
                store.list_attempts(&m, &c.delivery_id).await.unwrap().len(),
                1
            );
        }
    }

    /// A successful attempt's completion of some delivery.
    pub(in crate::sqlite) fn any_completion(releases_key: bool) -> blockhook_core::Completion {
        use blockhook_core::{AttemptId, AttemptRecord, Completion, DeliveryId, LeaseToken, Next};
        let delivery_id = DeliveryId::generate();
        Completion {
            delivery_id: delivery_id.clone(),
            lease: LeaseToken(1),
            attempt: AttemptRecord {
                id: AttemptId::generate(),
                delivery_id,
                number: 1,
                started_at: T0,
                url: "https://127.0.0.1/hook".to_owned(),
                request_headers: vec![],
                status: Some(200),
                response_headers: vec![],
                response_body: Bytes::new(),
                response_truncated: false,
                latency_ms: 1,
                error: None,
                error_detail: None,
            },
            next: Next::Succeeded,
            disable_reason: None,
            releases_key,
        }
    }

    /// The completion of a successful attempt of `c` under `lease`.
    fn completion(
        c: &blockhook_core::Claim,
        lease: blockhook_core::LeaseToken,
    ) -> blockhook_core::Completion {
        let mut done = any_completion(false);
        done.delivery_id = c.delivery_id.clone();
        done.lease = lease;
        done.attempt.delivery_id = c.delivery_id.clone();
        done.attempt.number = c.attempt;
        done.attempt.url = c.endpoint.url.as_str().to_owned();
        done
    }

    /// Finishes sent while events are being ingested are left on the writer's tray: they are
    /// written with the next ingest, or by the thread alone once no ingest has come for the
    /// window. Either way each caller is answered, and nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finishes_left_on_the_tray_are_written() {
        let (_dir, store, m, claims) = claimed(3).await;

        // Ingests keep coming: the finish rides with the next one.
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        let finish = {
            let (store, done) = (
                Arc::clone(&store),
                vec![completion(&claims[0], claims[0].lease)],
            );
            tokio::spawn(async move { store.finish(done.into(), T0).await })
        };
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        assert_eq!(finish.await.unwrap().unwrap(), 1);

        // No ingest follows: the thread writes the tray when the window closes.
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        let done = vec![completion(&claims[1], claims[1].lease)];
        let alone = tokio::time::timeout(Duration::from_secs(10), store.finish(done.into(), T0));
        assert_eq!(
            alone
                .await
                .expect("the tray is written without an ingest")
                .unwrap(),
            1
        );

        // Long after the last ingest, a finish goes straight to the thread.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = vec![completion(&claims[2], claims[2].lease)];
        assert_eq!(store.finish(done.into(), T0).await.unwrap(), 1);
        for c in &claims {
            assert_eq!(
                store.list_attempts(&m, &c.delivery_id).await.unwrap().len(),
                1
            );
        }
    }

    #[tokio::test]
    async fn in_memory_store_works() {
        let store = SqliteStore::open("sqlite::memory:", &StoreOptions::default())
            .await
            .unwrap();
        let m = tenant(&store).await;
        store.ingest(&events(&m, 3, 10)).await.unwrap();
        assert_eq!(store.claim_due(&claim_req(10)).await.unwrap().len(), 3);
        assert!(store.statements() > 0);
        store.ping().await.unwrap();
    }
}
