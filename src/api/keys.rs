//! `jobqueue.v1.KeyService`: API keys made, listed and revoked within the
//! caller's namespace.

use std::collections::BTreeSet;

use tonic::{Request, Response, Status};

use super::Violations;
use super::convert::{self, duration_ms, timestamp};
use crate::auth::{Caller, Scope, key, scopes_from, scopes_text};
use crate::engine::{Engine, KeyChange};
use crate::proto::{self, key_service_server::KeyService};
use crate::store::api_keys;

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;
const PAGE_TOKEN_PREFIX: &str = "keys-before:";
const DEFAULT_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
const MIN_TTL_MS: i64 = 60 * 1000;
const MAX_TTL_MS: i64 = 2 * 366 * 24 * 3600 * 1000;
const MAX_DESCRIPTION: usize = 1024;

pub struct KeyApi {
    engine: Engine,
    /// Whether keys are asked for at all: an open service has none to give.
    keys_on: bool,
}

impl KeyApi {
    pub fn new(engine: Engine, keys_on: bool) -> Self {
        KeyApi { engine, keys_on }
    }

    /// The caller, when keys are on.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if !self.keys_on {
            return Err(Status::failed_precondition(
                "the service runs open, without keys: start it with a keys file \
                 (JOBQUEUE_KEYS_FILE) to manage keys",
            ));
        }
        Ok(Caller::of(request))
    }
}

fn key_proto(k: api_keys::Model) -> proto::Key {
    proto::Key {
        scopes: scopes_from(&k.scopes)
            .into_iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        id: k.id,
        namespace: k.namespace,
        description: k.description,
        create_time: Some(timestamp(k.created_at)),
        expire_time: Some(timestamp(k.expires_at)),
        revoke_time: k.revoked_at.map(timestamp),
        source: k.source,
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn create_key(
        &self,
        request: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::CreatedKey>, Status> {
        let caller = self.caller(&request)?;
        let proto::CreateKeyRequest {
            description,
            scopes,
            ttl,
        } = request.into_inner();
        let mut v = Violations::default();
        if description.len() > MAX_DESCRIPTION {
            v.add("description", format!("at most {MAX_DESCRIPTION} bytes"));
        }
        let mut granted = BTreeSet::new();
        for (i, name) in scopes.iter().enumerate() {
            match Scope::parse(name) {
                Some(scope) => {
                    granted.insert(scope);
                }
                None => v.add(format!("scopes[{i}]"), format!("one of {}", Scope::names())),
            }
        }
        if scopes.is_empty() {
            v.add("scopes", format!("at least one of {}", Scope::names()));
        }
        let ttl_ms = match ttl {
            None => DEFAULT_TTL_MS,
            Some(d) => match duration_ms(&d) {
                Some(ms) if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ms) => ms,
                _ => {
                    v.add("ttl", "from 1 minute to 2 years, or unset for 90 days");
                    0
                }
            },
        };
        v.into_result(())?;
        let beyond: Vec<&str> = granted
            .difference(&caller.scopes)
            .map(|s| s.as_str())
            .collect();
        if !beyond.is_empty() {
            return Err(Status::permission_denied(format!(
                "a key may grant only scopes its maker holds; this key does not hold {}",
                beyond.join(", ")
            )));
        }
        let (id, secret) = key::generate();
        let presented = key::parse(&secret).ok_or_else(|| Status::internal("key shape"))?;
        let now = crate::now_ms();
        let row = api_keys::Model {
            id,
            namespace: caller.namespace,
            scopes: scopes_text(&granted),
            secret_hash: key::hash(presented.secret),
            description,
            source: "api".into(),
            created_at: now,
            expires_at: now + ttl_ms,
            revoked_at: None,
        };
        let saved = self.engine.change_keys(KeyChange::Save(vec![row])).await?;
        let key = saved
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the key was not saved"))?;
        tracing::info!(key = %key.id, namespace = %key.namespace, by = ?caller.key_id, "key created");
        Ok(Response::new(proto::CreatedKey {
            key: Some(key_proto(key)),
            secret,
        }))
    }

    async fn list_keys(
        &self,
        request: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        let caller = self.caller(&request)?;
        let proto::ListKeysRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let page_size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let before = convert::page_start(PAGE_TOKEN_PREFIX, &page_token, "ListKeys", &mut v);
        v.into_result(())?;
        let mut rows = self
            .engine
            .store()
            .list_keys(&caller.namespace, before.as_deref(), page_size as u64 + 1)
            .await?;
        let next_page_token = convert::page_end(&mut rows, page_size, PAGE_TOKEN_PREFIX, |k| &k.id);
        Ok(Response::new(proto::ListKeysResponse {
            keys: rows.into_iter().map(key_proto).collect(),
            next_page_token,
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<proto::RevokeKeyRequest>,
    ) -> Result<Response<proto::Key>, Status> {
        let caller = self.caller(&request)?;
        let proto::RevokeKeyRequest { id } = request.into_inner();
        if id.is_empty() {
            return Err(super::invalid("id", "required: a key id (k and a ULID)"));
        }
        let revoked = self
            .engine
            .change_keys(KeyChange::Revoke {
                namespace: caller.namespace.clone(),
                id,
            })
            .await?;
        let key = revoked
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the key was not revoked"))?;
        tracing::info!(key = %key.id, namespace = %key.namespace, by = ?caller.key_id, "key revoked");
        Ok(Response::new(key_proto(key)))
    }
}
