//! The check in front of every service (through [`crate::admit`]): it finds the key in the
//! `authorization` metadata, checks it against the store (so a key revoked
//! through any process is refused by every process at once), checks the scope
//! the RPC needs, and hands the handler its [`Caller`].
//!
//! Missing, malformed, unknown, wrong, expired or revoked keys are all
//! `UNAUTHENTICATED` with one message, in time that does not tell them apart; a
//! key without the scope is `PERMISSION_DENIED`, naming the scope.

use tonic::Status;

use super::{Caller, Needed, key, needed, scopes_from};
use crate::admit::Admit;
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
    pub async fn check(&self, path: &str, authorization: Option<&str>) -> Result<Caller, Status> {
        let needed = needed(path);
        let store = match self {
            Gate::Open => return Ok(Caller::open()),
            Gate::Keys(store) => store,
        };
        if needed == Needed::Nothing {
            // Health and reflection: served to anyone, as no one in particular.
            return Ok(Caller::anyone());
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

impl Admit for Gate {
    type Pass = ();

    async fn admit<B: Send>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let path = request.uri().path().to_string();
        let caller = self.check(&path, authorization.as_deref()).await?;
        // Whom the audit log names for the changes this call asks for.
        let actor = crate::audit::Actor {
            key_id: caller.key_id.clone(),
            namespace: caller.namespace.clone(),
            peer: crate::audit::peer_of(request),
        };
        request.extensions_mut().insert(std::sync::Arc::new(actor));
        request.extensions_mut().insert(caller);
        Ok(())
    }
}
