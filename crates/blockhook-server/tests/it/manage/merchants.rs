//! Merchants and API keys: list, read, suspend, delete; keys shown once, listed by prefix,
//! revoked.

use reqwest::Method;
use serde_json::json;

use super::{assert_problem, call, json_of, key_for};
use crate::helpers::{ADMIN, TestApp, backends};

#[tokio::test]
async fn merchants_are_listed_read_suspended_reactivated_and_deleted() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(app.merchant().await);
        }
        let (_, chosen) = json_of(
            app.post(
                "/v1/merchants",
                ADMIN,
                &json!({ "name": "Chosen", "id": "mch_chosen1" }),
            )
            .await,
        )
        .await;
        assert_eq!(chosen["id"], "mch_chosen1");
        let r = app
            .post(
                "/v1/merchants",
                ADMIN,
                &json!({ "name": "Again", "id": "mch_chosen1" }),
            )
            .await;
        assert_problem(r, 409, None, "duplicate id").await;
        let r = app
            .post("/v1/merchants", ADMIN, &json!({ "name": "  " }))
            .await;
        assert_problem(r, 422, Some("name"), "blank name").await;
        let (status, page) = json_of(app.get("/v1/merchants?limit=2", ADMIN).await).await;
        assert_eq!(status, 200, "{backend:?} {page}");
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        let (_, rest) = json_of(
            app.get(
                &format!(
                    "/v1/merchants?limit=10&after={}",
                    page["next"].as_str().unwrap()
                ),
                ADMIN,
            )
            .await,
        )
        .await;
        assert_eq!(rest["data"].as_array().unwrap().len(), 2);
        assert_eq!(rest["next"], serde_json::Value::Null);
        let m = &ids[0];
        let (_, one) = json_of(app.get(&format!("/v1/merchants/{m}"), ADMIN).await).await;
        assert_eq!(
            (one["id"].as_str(), one["status"].as_str()),
            (Some(m.as_str()), Some("active"))
        );
        let key = key_for(&app, m).await;
        for (status, code) in [("suspended", 401), ("active", 200)] {
            let (s, v) = json_of(
                call(
                    &app,
                    Method::PATCH,
                    &format!("/v1/merchants/{m}"),
                    Some(ADMIN),
                    Some(&json!({ "status": status })),
                )
                .await,
            )
            .await;
            assert_eq!((s, v["status"].as_str()), (200, Some(status)));
            assert_eq!(
                app.get("/v1/merchants/me/endpoints", &key).await.status(),
                code,
                "{status}"
            );
        }
        let r = call(
            &app,
            Method::PATCH,
            &format!("/v1/merchants/{m}"),
            Some(ADMIN),
            Some(&json!({ "status": "gone" })),
        )
        .await;
        assert_problem(r, 422, Some("status"), "bad status").await;
        assert_eq!(
            call(
                &app,
                Method::DELETE,
                &format!("/v1/merchants/{m}"),
                Some(ADMIN),
                None
            )
            .await
            .status(),
            204
        );
        assert_eq!(
            app.get(&format!("/v1/merchants/{m}"), ADMIN).await.status(),
            404
        );
        assert_eq!(
            app.get("/v1/merchants/me/endpoints", &key).await.status(),
            401,
            "its keys went with it"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn keys_are_shown_once_listed_by_prefix_and_revoked() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        assert!(key.starts_with("bhk_"));
        let (_, list) = json_of(app.get(&format!("/v1/merchants/{m}/api-keys"), ADMIN).await).await;
        let listed = &list[0];
        assert_eq!(listed["prefix"].as_str().unwrap(), &key[..10]);
        assert!(
            !list.to_string().contains(&key),
            "{backend:?}: the key itself is never listed"
        );
        assert!(listed["revoked_at"].is_null());
        assert_eq!(
            app.get("/v1/merchants/me/endpoints", &key).await.status(),
            200
        );
        let id = listed["id"].as_str().unwrap();
        let path = format!("/v1/merchants/{m}/api-keys/{id}");
        assert_eq!(
            call(&app, Method::DELETE, &path, Some(ADMIN), None)
                .await
                .status(),
            204
        );
        assert_eq!(
            call(&app, Method::DELETE, &path, Some(ADMIN), None)
                .await
                .status(),
            204,
            "idempotent"
        );
        let r = app.get("/v1/merchants/me/endpoints", &key).await;
        assert_problem(r, 401, None, "revoked").await;
        let (_, list) = json_of(app.get(&format!("/v1/merchants/{m}/api-keys"), ADMIN).await).await;
        assert!(list[0]["revoked_at"].is_i64());
        let r = call(
            &app,
            Method::DELETE,
            &format!("/v1/merchants/{m}/api-keys/key_0000"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_problem(r, 404, None, "unknown key").await;
        let other = app.merchant().await;
        let r = call(
            &app,
            Method::DELETE,
            &format!("/v1/merchants/{other}/api-keys/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_problem(r, 404, None, "another merchant's key").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_merchant_key_reads_its_own_record_and_nothing_else_of_the_merchants_routes() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let other = app.merchant().await;
        for path in ["/v1/merchants/me".to_owned(), format!("/v1/merchants/{m}")] {
            let (status, v) = json_of(app.get(&path, &key).await).await;
            assert_eq!(status, 200, "{backend:?} {path}: {v}");
            assert_eq!(
                (v["id"].as_str(), v["status"].as_str()),
                (Some(m.as_str()), Some("active"))
            );
        }
        let r = app.get(&format!("/v1/merchants/{other}"), &key).await;
        assert_problem(r, 404, None, "another merchant's record").await;
        let r = app.get("/v1/merchants", &key).await;
        assert_problem(r, 403, None, "the list stays the operator's").await;
        let r = call(
            &app,
            Method::PATCH,
            "/v1/merchants/me",
            Some(&key),
            Some(&json!({ "status": "suspended" })),
        )
        .await;
        assert_problem(r, 403, None, "suspending stays the operator's").await;
        app.stop().await;
    }
}
