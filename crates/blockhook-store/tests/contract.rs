//! Runs the contract suite: one test per check, each on a fresh SQLite store and, when
//! `BLOCKHOOK_TEST_DATABASE_URL` is set, on a fresh PostgreSQL store too. A failure names the
//! check and the backend.
#![cfg(feature = "contract")]

use blockhook_store::contract::{checks, run};

macro_rules! contract {
    ($($group:ident :: $check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            run(stringify!($check), checks::$group::$check).await;
        }
    )*};
}

contract!(
    alerts::operational_events_only_reach_endpoints_naming_them,
    alerts::failure_windows_and_exhausted_deliveries,
    alerts::watch_rows_and_cursor_round_trip,
    alerts::auto_disable_is_compare_and_set,
    merchants::merchant_crud,
    merchants::merchant_suspend,
    merchants::merchant_delete_cascades,
    merchants::api_key_lifecycle,
    endpoints::endpoint_crud,
    endpoints::endpoint_tenant_isolation,
    endpoints::endpoint_delete_removes_deliveries,
    ingest::ingest_fans_out,
    ingest::fan_out_follows_changes_after_an_ingest,
    ingest::ingest_idempotency,
    ingest::ingest_idempotency_conflict,
    ingest::ingest_refuses_unknown_and_suspended_merchants,
    ingest::ingest_batch_is_atomic,
    ingest::ingest_large_batch,
    ingest::payload_round_trips_exactly,
    ingest::event_tenant_isolation,
    dispatch::claim_only_due,
    dispatch::claim_sees_endpoint_updates,
    dispatch::lease_excludes_reclaim_until_expired,
    dispatch::claim_honours_per_endpoint_max_and_exclude,
    dispatch::claim_spreads_over_endpoints_behind_one_backlog,
    dispatch::disabled_endpoint_not_claimed,
    dispatch::concurrent_claimers_never_share,
    dispatch::finish_succeeded,
    dispatch::finish_retry_reschedules,
    dispatch::finish_give_up_fails,
    dispatch::finish_disable_endpoint,
    dispatch::finish_with_stale_token_changes_nothing,
    dispatch::attempt_record_round_trips,
    dispatch::renew_leases_needs_the_right_token,
    dispatch::next_due_at_reports_earliest,
    dispatch::ingest_and_claim_leases_like_a_claim,
    dispatch::ingest_and_claim_keeps_a_claims_limits,
    dispatch::ingest_and_claim_new_first_leases_like_a_claim,
    dispatch::ingest_and_claim_new_first_keeps_a_claims_limits,
    dispatch::ingest_and_claim_new_first_hands_the_batchs_own,
    ordering::ingest_and_claim_hands_only_a_keys_head,
    ordering::ingest_and_claim_new_first_hands_only_a_keys_head,
    logs::list_events_newest_first,
    logs::list_events_stable_under_concurrent_inserts,
    logs::list_events_filters,
    logs::list_deliveries_reports_in_flight,
    search::search_by_field_and_id,
    search::search_by_endpoint_and_state,
    search::search_pages_both_ways,
    actions::resend_scopes,
    actions::resend_limits,
    actions::recover_requeues_failed_since,
    actions::backlog_counts,
    activity::endpoint_activity_views,
    actions::queue_stats_counts,
    actions::endpoint_health_window,
    batch::api_keys_of_several_merchants,
    batch::deliveries_of_several_events,
    batch::attempts_of_an_event,
    batch::health_of_several_endpoints,
    retention::purge_before_removes_exactly_the_old,
    scale::many_claimers_never_double_claim,
    scale::notify_wakes_wait_for_work,
    scale::round_trips_per_delivered_event,
    ordering::ordering_setting_round_trips,
    sources::dead_letters_are_kept_once_per_message,
    ordering::only_the_head_of_a_key_is_claimed,
    ordering::in_flight_head_blocks_its_key,
    ordering::other_keys_and_unkeyed_are_not_blocked,
    ordering::continue_releases_the_next_after_final_failure,
    ordering::hold_keeps_the_key_until_released,
    ordering::resend_goes_to_the_back_and_releases_a_hold,
    ordering::recover_keeps_publish_order,
    ordering::explicit_key_beats_key_field,
    ordering::concurrent_ingest_numbers_in_commit_order,
    ordering::mode_change_applies_to_new_deliveries,
);
