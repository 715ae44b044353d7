//! `GET /openapi.json`: the API described as OpenAPI 3.0, generated from the handlers' request
//! types (their JSON schemas, via schemars) and the route table, so the description cannot drift
//! from what the handlers parse. Responses are described by status: 200 with a JSON object, and
//! the OpenAI error shape for 4xx/5xx.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::{OPENAI_ALIAS, ROUTES};

/// The request body type of a route, as a schema reference; `None` for routes without one.
fn body(generator: &mut SchemaGenerator, method: &str, path: &str) -> Option<Value> {
    fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<Value> {
        Some(generator.subschema_for::<T>().to_value())
    }
    use crate::{conversations as c, openai as o, responses as r, routes as h, vector_stores as v};
    match (method, path) {
        ("POST", "/v1/chat/completions") => of::<o::ChatCompletionRequest>(generator),
        ("POST", "/v1/completions") => of::<o::CompletionRequest>(generator),
        ("POST", "/v1/embeddings") => of::<h::EmbeddingsRequest>(generator),
        ("POST", "/v1/moderations") => of::<h::ModerationRequest>(generator),
        ("POST", "/v1/safety/run-shield") => of::<h::RunShieldRequest>(generator),
        ("POST", "/v1/vector_stores") => of::<v::CreateStore>(generator),
        ("POST", "/v1/vector_stores/{vector_store_id}") => of::<v::UpdateStore>(generator),
        ("POST", "/v1/vector_stores/{vector_store_id}/search") => of::<v::Search>(generator),
        ("POST", "/v1/vector_stores/{vector_store_id}/files") => of::<v::AttachFile>(generator),
        ("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}") => {
            of::<v::UpdateFile>(generator)
        }
        ("POST", "/v1/vector_stores/{vector_store_id}/file_batches") => {
            of::<v::CreateBatch>(generator)
        }
        ("POST", "/v1/responses") => of::<r::CreateResponse>(generator),
        ("POST", "/v1/conversations") => of::<c::Create>(generator),
        ("POST", "/v1/conversations/{conversation_id}") => of::<c::Update>(generator),
        ("POST", "/v1/conversations/{conversation_id}/items") => of::<c::AddItems>(generator),
        _ => None,
    }
}

fn operation(generator: &mut SchemaGenerator, method: &str, path: &str) -> Value {
    let parameters: Vec<Value> = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let error = json!({"description": "An error in OpenAI's shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut op = json!({
        "operationId": format!("{} {}", method.to_lowercase(), path),
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "4XX": error,
            "5XX": error,
        },
    });
    if method == "POST" && path == "/v1/files" {
        op["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file", "purpose"],
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}},
        }}}});
    } else if let Some(schema) = body(generator, method, path) {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let aliased = |path: &str| {
        [
            "/v1/models",
            "/v1/chat",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/moderations",
            "/v1/files",
            "/v1/vector_stores",
            "/v1/responses",
            "/v1/conversations",
        ]
        .iter()
        .any(|p| path.starts_with(p))
    };
    for (method, path) in ROUTES {
        let op = operation(&mut generator, method, path);
        let mut add = |p: String| {
            let entry = paths.entry(p).or_insert_with(|| json!({}));
            entry[method.to_lowercase()] = op.clone();
        };
        add(path.to_string());
        if aliased(path) {
            add(format!("{OPENAI_ALIAS}{}", &path["/v1".len()..]));
        }
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": true},
                "code": {"type": "string", "nullable": true},
            },
        }}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Corral",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI- and Llama-Stack-compatible API over a Corral stack.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}
