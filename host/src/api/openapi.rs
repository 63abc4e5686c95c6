//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' annotations and the request/response types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "pdpp-host owner API", description = "Connect accounts, run connectors, answer their questions, read the data. See docs/api.md."),
    paths(
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
    components(schemas(super::ErrorBody)),
    modifiers(&OwnerBearer)
)]
pub struct ApiDoc;

/// Declares the owner bearer token the `security(("owner" = []))` entries name.
struct OwnerBearer;

impl Modify for OwnerBearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "owner",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document; no authentication.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
