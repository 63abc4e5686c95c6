//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' annotations and the request/response types.
//!
//! Conventions (docs/api.md#the-openapi-document):
//! - every operation has a unique `operation_id` (`verbNoun`) and one tag
//!   per resource;
//! - each handler's annotation declares the statuses its own code returns,
//!   with [`ErrorBody`] and the `code` values in the description;
//!   [`CommonErrors`] adds the shared ones as response components (414
//!   and 431 everywhere; 401 and 500 on owner routes; 400/413/415 for a
//!   body; 400 for a query or a path parameter);
//! - constraints the server enforces come from the same constants the
//!   handlers check (helpers below);
//! - [`LINKS`] says which response field feeds which operation's
//!   parameter, so a stateful client can walk a connection's life.

use super::ErrorBody;
use axum::Json;
use serde_json::{Value, json};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "pdpp-host owner API", description = "Connect accounts, run connectors, answer their questions, read the data. See docs/api.md."),
    tags(
        (name = "host", description = "Liveness of the host and its plugins (no authentication)."),
        (name = "catalog", description = "The connectors this host can run, with their setup plans."),
        (name = "connections", description = "The owner's connections: create, read, rename, revoke, delete."),
        (name = "setup", description = "A connection's setup: its status, its credential, a credential bootstrap, reconnecting."),
        (name = "runs", description = "Collection runs: start, list, read, follow live, cancel."),
        (name = "records", description = "The collected records."),
        (name = "audit", description = "The audit trail."),
        (name = "interactions", description = "Questions a run asks the owner, and the answers."),
    ),
    paths(
        super::health,
        super::catalog::list,
        super::catalog::one,
        super::connections::list,
        super::connections::create,
        super::connections::one,
        super::connections::update,
        super::connections::delete,
        super::connections::setup_status,
        super::connections::put_credential,
        super::connections::revoke,
        super::connections::reconnect,
        super::bootstrap::start,
        super::runs::start,
        super::runs::of_connection,
        super::runs::one,
        super::runs::cancel,
        super::runs::events,
        super::records::list,
        super::records::audit,
        super::interactions::list,
        super::interactions::answer,
        super::interactions::screenshot,
    ),
    components(schemas(ErrorBody)),
    modifiers(&OwnerBearer, &CommonErrors, &Constraints)
)]
pub struct ApiDoc;

/// Declares the owner bearer token the `security(("owner" = []))` entries name.
struct OwnerBearer;

impl Modify for OwnerBearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "owner",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The owner token (`pdpp_owner_` and 64 hex digits), printed once at first start.",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error response: [`ErrorBody`] as JSON.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
        )
        .build()
}

/// Which operations a shared error response applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every route (the limits `typed_errors` enforces before routing).
    Every,
    /// Routes that take the owner token.
    Owner,
    /// Operations that read a request body.
    Body,
    /// Operations that read query parameters.
    Query,
    /// Operations with path parameters.
    Path,
}

/// A shared error response: its status, component name, description
/// (which names its codes) and scope.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: String,
    scope: Scope,
}

/// The shared error responses, their limits from the constants the server checks.
fn shared_responses() -> Vec<Shared> {
    use super::{MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_URI_BYTES};
    let shared = |status, name, description: String, scope| Shared {
        status,
        name,
        description,
        scope,
    };
    vec![
        shared(
            "414",
            "UriTooLong",
            format!("`uri_too_long`: the path and query are longer than {MAX_URI_BYTES} bytes"),
            Scope::Every,
        ),
        shared(
            "431",
            "HeadersTooLarge",
            format!("`headers_too_large`: the request headers hold more than {MAX_HEADER_BYTES} bytes"),
            Scope::Every,
        ),
        shared(
            "401",
            "Unauthenticated",
            "`unauthenticated`: no owner bearer token, or not the owner's".into(),
            Scope::Owner,
        ),
        shared(
            "500",
            "InternalError",
            "`store_error`, `internal_error`: the host could not complete the request (details in its log)".into(),
            Scope::Owner,
        ),
        shared(
            "400",
            "InvalidBody",
            "`invalid_body`: the body is not JSON of the expected shape".into(),
            Scope::Body,
        ),
        shared(
            "413",
            "BodyTooLarge",
            format!("`body_too_large`: the body is larger than {MAX_BODY_BYTES} bytes"),
            Scope::Body,
        ),
        shared(
            "415",
            "UnsupportedMediaType",
            "`unsupported_media_type`: the body is not sent as `application/json`".into(),
            Scope::Body,
        ),
        shared(
            "400",
            "InvalidQuery",
            "`invalid_query`: a query parameter is missing or not of its type".into(),
            Scope::Query,
        ),
        shared(
            "400",
            "InvalidPath",
            "`invalid_request`: a path parameter is not valid (percent-encoded bytes that are not UTF-8)".into(),
            Scope::Path,
        ),
    ]
}

/// Adds the shared error responses (see the module docs). Where the
/// handler declares the status itself, its description gains the shared
/// codes; where two shared responses meet on one status, one response
/// names both.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let all = shared_responses();
        let components = doc.components.get_or_insert_with(Default::default);
        for r in &all {
            components
                .responses
                .insert(r.name.to_owned(), RefOr::T(error_response(&r.description)));
        }
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let params = op.parameters.iter().flatten();
                let has = |place: ParameterIn| params.clone().any(|p| p.parameter_in == place);
                let applies = |scope| match scope {
                    Scope::Every => true,
                    Scope::Owner => op.security.as_ref().is_some_and(|s| !s.is_empty()),
                    Scope::Body => op.request_body.is_some(),
                    Scope::Query => has(ParameterIn::Query),
                    Scope::Path => has(ParameterIn::Path),
                };
                let wanted: Vec<&Shared> = all.iter().filter(|r| applies(r.scope)).collect();
                for r in wanted {
                    match op.responses.responses.get_mut(r.status) {
                        None => {
                            let reference = RefOr::Ref(Ref::from_response_name(r.name));
                            op.responses.responses.insert(r.status.to_owned(), reference);
                        }
                        Some(existing @ RefOr::Ref(_)) => {
                            let merged = format!("{}; {}", description_of(&all, existing), r.description);
                            *existing = RefOr::T(error_response(&merged));
                        }
                        Some(RefOr::T(own)) => {
                            let code = r.description.split('`').nth(1).unwrap_or_default();
                            if !own.description.contains(&format!("`{code}`")) {
                                own.description = format!("{}; {}", own.description, r.description);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The description of a shared response a `$ref` points to.
fn description_of(all: &[Shared], r: &RefOr<Response>) -> String {
    let RefOr::Ref(r) = r else { return String::new() };
    let name = r.ref_location.rsplit('/').next().unwrap_or_default();
    all.iter()
        .find(|s| s.name == name)
        .map(|s| s.description.clone())
        .unwrap_or_default()
}

/// The operations of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// One OpenAPI link: from a response of `from` (operation id, status) to
/// the operation `to`, whose parameters come from runtime expressions.
pub struct LinkSpec {
    pub from: (&'static str, &'static str),
    pub name: &'static str,
    pub to: &'static str,
    pub parameters: &'static [(&'static str, &'static str)],
}

const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> LinkSpec {
    LinkSpec {
        from: (from, status),
        name,
        to,
        parameters,
    }
}

const CREATED: &str = "$response.body#/connection/connection_id";
const FIRST_SYNC: &str = "$response.body#/first_sync/run_id";
const RUN: &str = "$response.body#/run_id";
const SAME_CONNECTION: &str = "$request.path.id";
const RESPONSE_CONNECTION: &str = "$response.body#/connection_id";

/// Create a connection → its reads and changes, its runs, records, audit
/// trail and questions; start a run → the run, its events, its cancel;
/// revoke → delete and reconnect.
pub const LINKS: &[LinkSpec] = &[
    link(
        "createConnection",
        "201",
        "GetConnection",
        "getConnection",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "UpdateConnection",
        "updateConnection",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "GetSetupStatus",
        "getSetupStatus",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "PutCredential",
        "putCredential",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "StartBootstrap",
        "startBootstrap",
        &[("id", CREATED)],
    ),
    link("createConnection", "201", "StartRun", "startRun", &[("id", CREATED)]),
    link("createConnection", "201", "ListRuns", "listRuns", &[("id", CREATED)]),
    link(
        "createConnection",
        "201",
        "ListRecords",
        "listRecords",
        &[("connection_id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "ListAuditEvents",
        "listAuditEvents",
        &[("connection_id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "ListInteractions",
        "listInteractions",
        &[("connection_id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "RevokeConnection",
        "revokeConnection",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "ReconnectConnection",
        "reconnectConnection",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "DeleteConnection",
        "deleteConnection",
        &[("id", CREATED)],
    ),
    link(
        "createConnection",
        "201",
        "GetFirstSync",
        "getRun",
        &[("id", FIRST_SYNC)],
    ),
    link(
        "createConnection",
        "201",
        "StreamFirstSyncEvents",
        "streamRunEvents",
        &[("id", FIRST_SYNC)],
    ),
    link("startRun", "202", "GetRun", "getRun", &[("id", RUN)]),
    link("startRun", "202", "StreamRunEvents", "streamRunEvents", &[("id", RUN)]),
    link("startRun", "202", "CancelRun", "cancelRun", &[("id", RUN)]),
    link(
        "startRun",
        "202",
        "GetRunSetupStatus",
        "getSetupStatus",
        &[("id", SAME_CONNECTION), ("run_id", RUN)],
    ),
    link(
        "startRun",
        "202",
        "ListRunInteractions",
        "listInteractions",
        &[("run_id", RUN)],
    ),
    link(
        "startRun",
        "202",
        "ListRecords",
        "listRecords",
        &[("connection_id", SAME_CONNECTION)],
    ),
    link(
        "startRun",
        "202",
        "RevokeConnection",
        "revokeConnection",
        &[("id", SAME_CONNECTION)],
    ),
    link("startBootstrap", "202", "GetRun", "getRun", &[("id", RUN)]),
    link(
        "startBootstrap",
        "202",
        "StreamRunEvents",
        "streamRunEvents",
        &[("id", RUN)],
    ),
    link(
        "startBootstrap",
        "202",
        "ListRunInteractions",
        "listInteractions",
        &[("run_id", RUN)],
    ),
    link(
        "revokeConnection",
        "200",
        "DeleteConnection",
        "deleteConnection",
        &[("id", RESPONSE_CONNECTION)],
    ),
    link(
        "revokeConnection",
        "200",
        "ReconnectConnection",
        "reconnectConnection",
        &[("id", RESPONSE_CONNECTION)],
    ),
    link(
        "reconnectConnection",
        "200",
        "GetFirstSync",
        "getRun",
        &[("id", FIRST_SYNC)],
    ),
    link("putCredential", "201", "GetFirstSync", "getRun", &[("id", FIRST_SYNC)]),
];

/// Adds [`LINKS`] to the responses they start from. On the JSON: utoipa
/// 5.5 writes a link's `operationId` as `operation_id`, which is not OpenAPI.
fn add_links(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let Some(id) = op["operationId"].as_str().map(str::to_owned) else {
                continue;
            };
            for l in LINKS.iter().filter(|l| l.from.0 == id) {
                let response = &mut op["responses"][l.from.1];
                if !response.is_object() {
                    continue;
                }
                let parameters: serde_json::Map<String, Value> = l
                    .parameters
                    .iter()
                    .map(|(name, expression)| ((*name).to_owned(), Value::from(*expression)))
                    .collect();
                response["links"][l.name] = json!({ "operationId": l.to, "parameters": parameters });
            }
        }
    }
}

/// What the derive cannot say: `PATCH /v1/connections/{id}` changes at
/// least one field (utoipa 5.5's `min_properties` writes `maxProperties`).
struct Constraints;

impl Modify for Constraints {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) = components.schemas.get_mut("UpdateBody") {
            o.min_properties = Some(1);
        }
    }
}

/// An integer parameter or field between `min` and `max`, `default` when absent.
pub fn int_range(min: i64, max: i64, default: Option<i64>) -> utoipa::openapi::schema::Object {
    let description = match default {
        Some(d) => format!("{min} to {max}; {d} when absent"),
        None => format!("{min} to {max}"),
    };
    ObjectBuilder::new()
        .description(Some(description))
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .default(default.map(serde_json::Value::from))
        .build()
}

/// Any 64-bit signed integer (what the server parses: anything else is `invalid_query`).
pub fn int64() -> utoipa::openapi::schema::Object {
    int_range(i64::MIN, i64::MAX, None)
}

/// The document as served.
pub fn document_value() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    add_links(&mut doc);
    doc
}

/// The document; no authentication.
pub async fn document() -> Json<Value> {
    Json(document_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn doc() -> Value {
        document_value()
    }

    fn each_operation(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((format!("{} {path}", method.to_uppercase()), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_unique_camel_case_operation_id_and_a_tag() {
        let doc = doc();
        let mut seen = BTreeSet::new();
        let tags: BTreeSet<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        for (what, _, op) in each_operation(&doc) {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{what} has no operationId"));
            assert!(
                id.chars().next().unwrap().is_ascii_lowercase() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{what}: {id} is not camelCase"
            );
            assert!(seen.insert(id.to_owned()), "{what}: operationId {id} is used twice");
            let op_tags = op["tags"].as_array().unwrap_or_else(|| panic!("{what} has no tag"));
            assert_eq!(op_tags.len(), 1, "{what}");
            assert!(tags.contains(op_tags[0].as_str().unwrap()), "{what}: undeclared tag");
        }
        assert!(seen.len() >= 23, "{seen:?}");
    }

    /// The body of a response, following a `$ref` to `components.responses`.
    fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
        match response["$ref"].as_str() {
            Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
            None => response,
        }
    }

    #[test]
    fn every_error_status_declares_the_error_body() {
        let doc = doc();
        for (what, _, op) in each_operation(&doc) {
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let response = resolve(&doc, response);
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{what} {status}"
                );
                assert!(
                    response["description"].as_str().is_some_and(|d| d.contains('`')),
                    "{what} {status} names no code"
                );
            }
            if op["security"].is_array() {
                for status in ["401", "500"] {
                    assert!(responses.contains_key(status), "{what} does not declare {status}");
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{what} does not declare {status}");
                }
            }
        }
    }

    #[test]
    fn every_link_names_an_operation_and_its_parameters() {
        let doc = doc();
        let ops = each_operation(&doc);
        let by_id = |id: &str| {
            ops.iter()
                .find(|(_, _, op)| op["operationId"] == id)
                .map(|(_, _, op)| op.clone())
                .unwrap_or_else(|| panic!("no operation {id}"))
        };
        for l in LINKS {
            let from = by_id(l.from.0);
            let placed = &from["responses"][l.from.1]["links"][l.name];
            assert_eq!(placed["operationId"], l.to, "{} {}", l.from.0, l.name);
            let to = by_id(l.to);
            for (name, expression) in l.parameters {
                assert!(
                    to["parameters"].as_array().unwrap().iter().any(|p| p["name"] == *name),
                    "{} has no parameter {name}",
                    l.to
                );
                if let Some(pointer) = expression.strip_prefix("$response.body#") {
                    // The pointer exists in the response schema.
                    let schema_ref = from["responses"][l.from.1]["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{} {} has no schema ref", l.from.0, l.from.1));
                    let mut schema = &doc["components"]["schemas"][schema_ref.rsplit('/').next().unwrap()];
                    for segment in pointer.trim_start_matches('/').split('/') {
                        let mut property = &schema["properties"][segment];
                        // An optional object is `oneOf: [null, $ref]`.
                        if let Some(r) = property["oneOf"]
                            .as_array()
                            .and_then(|alts| alts.iter().find_map(|a| a["$ref"].as_str()))
                            .or_else(|| property["$ref"].as_str())
                        {
                            property = &doc["components"]["schemas"][r.rsplit('/').next().unwrap()];
                        }
                        assert!(!property.is_null(), "{}: {pointer} is not in its response", l.name);
                        schema = property;
                    }
                }
            }
        }
    }

    #[test]
    fn the_display_name_schema_accepts_exactly_the_names_the_server_accepts() {
        let schema = serde_json::to_value(crate::setup::display_name_schema(false)).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut names: Vec<String> = (0u32..0x3100)
            .chain([0xfeff, 0x10ffff])
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!(" {c} "), format!("{c}{c}")])
            .collect();
        names.extend(["".into(), "a".repeat(200), "a".repeat(201), "\u{3000}x".into()]);
        for name in names {
            assert_eq!(
                validator.is_valid(&Value::String(name.clone())),
                crate::setup::check_display_name(&name).is_ok(),
                "{name:?}"
            );
        }
    }
}
