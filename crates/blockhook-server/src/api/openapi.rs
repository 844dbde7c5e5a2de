//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! view types' `ToSchema` derives, served at `/openapi.json`, and `/docs`: a small
//! self-contained page (no CDN, works offline) that renders the document's operations.
//!
//! The integration tests check that every route in [`super::route_table`] appears here, so a
//! route added without documentation fails the build's tests rather than going unnoticed.

use axum::Json;
use axum::response::Html;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{endpoints, events, health, logs, merchants, ordering};

routes! {
    get "/openapi.json" => document,
    get "/docs" => docs,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "blockhook",
        description = "Self-hosted webhook delivery, wire-compatible with BlockATM. Authenticate with \
            `Authorization: Bearer <token>`: the operator token, or a merchant API key (merchant \
            routes only; `me` may stand for the key's merchant id). Errors are \
            `application/problem+json` (RFC 9457) with a stable `type` and, for validation \
            errors, the offending `field`. Times are Unix milliseconds."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        health::live, health::ready, health::metrics,
        document, docs,
        events::publish, events::publish_batch,
        merchants::create, merchants::list, merchants::read, merchants::update, merchants::remove,
        merchants::issue_key, merchants::list_keys, merchants::revoke_key,
        endpoints::create, endpoints::list, endpoints::read, endpoints::update, endpoints::remove,
        endpoints::enable, endpoints::disable, endpoints::reveal_secret, endpoints::rotate_secret, endpoints::test_send,
        endpoints::recover, endpoints::activity, endpoints::backlog,
        logs::list, logs::read, logs::deliveries, logs::resend, logs::attempts, logs::retry,
        ordering::held, ordering::release,
    ),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Every /v1 operation can fail the same ways; saying so once here keeps the handler
        // annotations to what is specific to each route.
        let problem = ResponseBuilder::new()
            .description(
                "Problem details (RFC 9457): 400 malformed body, 401 missing, unknown or revoked \
                 key, 403 operator route, 404 unknown or another merchant's, 409 conflict \
                 (e.g. a resend limit), 413 too large, 422 validation (`field` names the \
                 input), 429 rate limited (`Retry-After`), 503 store unavailable",
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ];
            for op in ops.into_iter().flatten() {
                op.responses
                    .responses
                    .insert("default".to_owned(), problem.clone().into());
            }
        }
    }
}

/// The document.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3 JSON")))]
async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}

/// A human-readable rendering of `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "operations", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html")))]
async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

// Everything inline: operators often run blockhook on hosts without outside access.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>blockhook API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;margin-top:2em}
details{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.3em .7em}
summary{cursor:pointer} code,pre{font:13px ui-monospace,monospace;background:#f6f6f6}
pre{padding:.6em;overflow:auto} .m{display:inline-block;width:4.5em;font-weight:bold;text-transform:uppercase}
.get{color:#0a6} .post{color:#06c} .patch{color:#a60} .delete{color:#c22} table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
</style></head><body>
<h1>blockhook API</h1><p id="desc">Loading <a href="/openapi.json">/openapi.json</a>…</p><div id="ops"></div>
<script>
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const ref = s => s && s.$ref ? s.$ref.split('/').pop() : (s && s.type === 'array' ? ref(s.items) + '[]' : (s && s.type) || '');
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('desc').innerHTML = esc(doc.info.description) + ' (<a href="/openapi.json">JSON</a>)';
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) for (const [m, op] of Object.entries(item)) {
    const tag = (op.tags || ['other'])[0]; (byTag[tag] = byTag[tag] || []).push([m, path, op]);
  }
  let html = '';
  for (const [tag, ops] of Object.entries(byTag)) {
    html += '<h2>' + esc(tag) + '</h2>';
    for (const [m, path, op] of ops) {
      html += '<details><summary><span class="m ' + m + '">' + m + '</span><code>' + esc(path) + '</code> ' + esc(op.summary) + '</summary>';
      if (op.description) html += '<p>' + esc(op.description) + '</p>';
      if (op.parameters) html += '<table><tr><th>parameter</th><th>in</th><th>description</th></tr>' + op.parameters.map(p =>
        '<tr><td><code>' + esc(p.name) + '</code></td><td>' + esc(p.in) + '</td><td>' + esc(p.description) + '</td></tr>').join('') + '</table>';
      const body = op.requestBody && op.requestBody.content && Object.values(op.requestBody.content)[0];
      if (body) html += '<p>Body: <code>' + esc(ref(body.schema)) + '</code> ' + esc(op.requestBody.description) + '</p>';
      html += '<p>Responses: ' + Object.entries(op.responses || {}).map(([s, r]) => {
        const c = r.content && Object.values(r.content)[0];
        return '<code>' + esc(s) + '</code> ' + esc(r.description) + (c && c.schema ? ' <code>' + esc(ref(c.schema)) + '</code>' : '');
      }).join('; ') + '</p></details>';
    }
  }
  html += '<h2>schemas</h2>';
  for (const [name, s] of Object.entries((doc.components || {}).schemas || {})) {
    html += '<details><summary><code>' + esc(name) + '</code></summary><pre>' + esc(JSON.stringify(s, null, 2)) + '</pre></details>';
  }
  document.getElementById('ops').innerHTML = html;
}).catch(e => { document.getElementById('desc').textContent = 'Could not load /openapi.json: ' + e; });
</script></body></html>"#;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_registered_route() {
        let doc = serde_json::to_value(spec()).unwrap();
        for r in super::super::route_table() {
            let op = &doc["paths"][r.path][r.method];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
        }
    }
}
