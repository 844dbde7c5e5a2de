//! The OpenAPI document served by a running app lists every route the router registers, and
//! `/docs` is a self-contained page.

use serde_json::Value;

use blockhook_server::api;

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn openapi_json_documents_every_registered_route_and_docs_is_self_contained() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes = 0;
    for route in api::route_table() {
        routes += 1;
        let op = &doc["paths"][route.path][route.method];
        assert!(
            op.is_object(),
            "{} {} is registered but not documented",
            route.method,
            route.path
        );
        // And the route really is served (not the 404 fallback, not 405).
        let url = format!("{}{}", app.base, route.path);
        let resp = app
            .http
            .request(route.method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), 405, "{} {}", route.method, route.path);
        if resp.status() == 404 {
            let p: Value = resp.json().await.unwrap_or_default();
            assert_ne!(
                p["detail"], "route not found",
                "{} {} is documented but not served",
                route.method, route.path
            );
        }
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented, routes,
        "the document has no operation the router lacks"
    );
    assert!(doc["components"]["schemas"]["EndpointView"].is_object());
    // Ordered delivery: the setting on endpoints, the key on publishing, the held keys.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["EndpointView"]["properties"]["ordering"].is_object());
    assert!(schemas["OrderingView"].is_object(), "{}", schemas);
    assert!(schemas["OrderingInput"].is_object());
    assert!(schemas["HeldKeyView"].is_object());
    assert!(schemas["PublishEvent"]["properties"]["ordering_key"].is_object());
    // Probes and scraping need no token, and the document says so; every /v1 route needs one.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(
            doc["paths"][path]["get"]["security"],
            serde_json::json!([{}]),
            "{path} is marked unauthenticated"
        );
    }
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
    assert!(
        doc["paths"]["/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/secret"]["get"]
            .is_object()
    );
    let html = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = html.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no external resources"
    );
    app.stop().await;
}
