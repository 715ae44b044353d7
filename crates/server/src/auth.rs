//! Bearer API keys, each acting for a tenant. Objects a tenant creates (files, vector stores,
//! responses, conversations) are visible to that tenant only; another tenant's object answers
//! 404, as if it did not exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_stack::ServerSettings;

use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(pub Arc<str>);

impl Tenant {
    /// The tenant of an unauthenticated server.
    pub fn anonymous() -> Self {
        Self(Arc::from("default"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The keys a server accepts.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every request acts for [`Tenant::anonymous`].
    None,
    Keys(Arc<HashMap<String, Tenant>>),
}

impl Auth {
    /// The keys of `settings`, or no authentication where there are none, which only a loopback
    /// `host` or an explicit `allow_unauthenticated` permits.
    pub fn from_settings(settings: &ServerSettings, host: IpAddr) -> Result<Self, String> {
        if settings.api_keys.is_empty() {
            if !host.is_loopback() && !settings.allow_unauthenticated {
                return Err(format!(
                    "server.api_keys: none are configured, and {host} is not a loopback address; \
                     add [[server.api_keys]] (key and tenant), or set \
                     server.allow_unauthenticated = true to let anyone who can reach it in"
                ));
            }
            return Ok(Self::None);
        }
        let keys = settings
            .api_keys
            .iter()
            .map(|k| (k.key.clone(), Tenant(Arc::from(k.tenant.as_str()))))
            .collect();
        Ok(Self::Keys(Arc::new(keys)))
    }

    /// The tenant a request's `Authorization: Bearer …` header stands for.
    fn tenant(&self, request: &Request) -> Result<Tenant, ApiError> {
        let Self::Keys(keys) = self else {
            return Ok(Tenant::anonymous());
        };
        let unauthorized = |message: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, message).with_code("invalid_api_key")
        };
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("no API key: send `Authorization: Bearer <key>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <key>`"))?;
        // Compared by hash-map lookup; every key is checked the same way, known or not.
        keys.get(token)
            .cloned()
            .ok_or_else(|| unauthorized("the API key is not valid"))
    }
}

/// Middleware: resolves the tenant, or answers 401.
pub async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    match auth.tenant(&request) {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
