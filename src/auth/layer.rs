//! The tower layer in front of every service: it finds the key in the
//! `authorization` metadata, checks it against the store (so a key revoked
//! through any process is refused by every process at once), checks the scope
//! the RPC needs, and hands the handler its [`Caller`].
//!
//! Missing, malformed, unknown, wrong, expired or revoked keys are all
//! `UNAUTHENTICATED` with one message, in time that does not tell them apart; a
//! key without the scope is `PERMISSION_DENIED`, naming the scope.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

use super::{Caller, Needed, key, needed, scopes_from};
use crate::store::Store;

/// A hash no secret has: compared against when the key's id is unknown, so an
/// unknown id costs what a wrong secret does.
const NO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How calls are let in.
#[derive(Clone)]
pub enum Gate {
    /// No keys file: every call is served, as the default namespace.
    Open,
    /// Every call but health and reflection presents a key.
    Keys(Store),
}

impl Gate {
    /// The caller a call to `path` with `authorization` speaks for, or why not.
    pub async fn admit(&self, path: &str, authorization: Option<&str>) -> Result<Caller, Status> {
        let needed = needed(path);
        let store = match self {
            Gate::Open => return Ok(Caller::open()),
            Gate::Keys(store) => store,
        };
        if needed == Needed::Nothing {
            return Ok(Caller::open());
        }
        let unauthenticated = || {
            Status::unauthenticated(
                "a valid API key is required: send it in the authorization metadata as `Bearer jq_...`",
            )
        };
        let presented = authorization
            .and_then(key::from_authorization)
            .ok_or_else(unauthenticated)?;
        let row = store
            .key(presented.id)
            .await
            .map_err(|e| Status::unavailable(format!("the keys cannot be read: {e}")))?;
        let now = crate::now_ms();
        let stored_hash = row.as_ref().map_or(NO_HASH, |r| r.secret_hash.as_str());
        let secret_ok = key::matches(presented.secret, stored_hash);
        let row = match row {
            Some(row) if secret_ok && row.revoked_at.is_none() && row.expires_at > now => row,
            _ => return Err(unauthenticated()),
        };
        let caller = Caller {
            key_id: Some(row.id),
            namespace: row.namespace,
            scopes: scopes_from(&row.scopes),
        };
        match needed {
            Needed::Scope(scope) if caller.scopes.contains(&scope) => Ok(caller),
            Needed::Scope(scope) => Err(Status::permission_denied(format!(
                "this key does not hold the scope `{scope}`, which {path} needs"
            ))),
            _ => Err(Status::unimplemented(format!("{path}: no such method"))),
        }
    }
}

/// Puts [`Gate`] in front of a service.
#[derive(Clone)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

impl AuthLayer {
    pub fn new(gate: Gate) -> AuthLayer {
        AuthLayer {
            gate: Arc::new(gate),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            gate: self.gate.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The service that was polled ready serves this call; a clone waits for
        // the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let path = request.uri().path().to_string();
            match gate.admit(&path, authorization.as_deref()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
