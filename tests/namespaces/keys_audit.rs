//! KeyService and AuditService rows: beta making keys, listing and revoking
//! alpha's keys, and reading alpha's audit entries.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::callers::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::auth::key;
use jobqueue::proto;
use tonic::{Code, Status};

pub async fn create_key(w: Arc<World>) {
    for (maker, theirs, own) in [(&w.beta, &w.a, &w.b), (&w.alpha, &w.b, &w.a)] {
        let made = call!(
            maker,
            keys.create_key(proto::CreateKeyRequest {
                description: format!("{}'s reader", maker.ns),
                scopes: vec!["read".into()],
                ttl: None,
            })
        )
        .unwrap_or_else(|e| panic!("{} creates a key: {e:?}", maker.label));
        let key = made.key.expect("the key");
        assert_eq!(key.namespace, maker.ns, "a key is of its maker's namespace");
        let reader = Caller {
            ns: maker.ns,
            label: "a key made through the API",
            key: made.secret,
            id: key.id,
            channel: maker.channel.clone(),
        };
        hidden!(
            format!(
                "GetJob of another namespace's job, by a key {} made",
                maker.ns
            ),
            &theirs.done,
            made_up_job(),
            |id| call!(reader, jobs.get_job(proto::GetJobRequest { id }))
        );
        read_job(&reader, &own.done).await;
        assert_eq!(
            job_ids(&reader, Default::default()).await,
            job_ids(maker, Default::default()).await,
            "a key {} made lists what {} lists",
            maker.ns,
            maker.label
        );
    }
}

pub async fn list_keys(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let listed = |keys: Result<Vec<proto::Key>, Status>, who: &Caller| -> Vec<proto::Key> {
        keys.unwrap_or_else(|e| panic!("{} lists keys: {e:?}", who.label))
    };
    let b = listed(
        all_pages!(
            beta,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        beta,
    );
    let a = listed(
        all_pages!(
            alpha,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        alpha,
    );
    let a2 = listed(
        all_pages!(
            w.alpha2,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        &w.alpha2,
    );
    let ids =
        |keys: &[proto::Key]| -> BTreeSet<String> { keys.iter().map(|k| k.id.clone()).collect() };
    let leaked: Vec<&proto::Key> = b
        .iter()
        .filter(|k| k.namespace != "beta" || k.id == alpha.id || k.id == w.alpha2.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListKeys shows beta alpha's keys {leaked:#?}"
    );
    assert!(ids(&b).contains(&beta.id));
    let leaked: Vec<&proto::Key> = a
        .iter()
        .filter(|k| k.namespace != "alpha" || k.id == beta.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListKeys shows alpha beta's keys {leaked:#?}"
    );
    assert!(ids(&a).contains(&alpha.id) && ids(&a).contains(&w.alpha2.id));
    assert_eq!(ids(&a), ids(&a2), "alpha's two keys list the same keys");
    let token = call!(
        alpha,
        keys.list_keys(proto::ListKeysRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one key");
    if let Ok(page) = call!(
        beta,
        keys.list_keys(proto::ListKeysRequest {
            page_size: 1000,
            page_token: token
        })
    ) {
        let leaked: Vec<&proto::Key> = page
            .keys
            .iter()
            .filter(|k| k.namespace != "beta" || ids(&a).contains(&k.id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's keys {leaked:#?}"
        );
    }
}

/// Whether a key is still accepted.
async fn accepted(who: &Caller) -> Result<(), Status> {
    match call!(
        who,
        jobs.list_jobs(proto::ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
    ) {
        Err(status) if status.code() == Code::Unauthenticated => Err(status),
        _ => Ok(()),
    }
}

pub async fn revoke_key(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let (fake, _) = key::generate();
    hidden!(
        "RevokeKey of alpha's second key",
        &w.alpha2.id,
        &fake,
        |id| call!(beta, keys.revoke_key(proto::RevokeKeyRequest { id }))
    );
    let still = accepted(&w.alpha2).await;
    assert!(
        still.is_ok(),
        "LEAK: beta's RevokeKey revoked alpha's key: {still:?}"
    );
    // The other way, on a key beta makes for it.
    let made = call!(
        beta,
        keys.create_key(proto::CreateKeyRequest {
            description: "beta's to keep".into(),
            scopes: vec!["read".into()],
            ttl: None,
        })
    )
    .expect("beta makes a key");
    let betas = Caller {
        ns: "beta",
        label: "a key beta made",
        key: made.secret,
        id: made.key.expect("the key").id,
        channel: beta.channel.clone(),
    };
    hidden!(
        "RevokeKey of beta's key, by alpha",
        &betas.id,
        &fake,
        |id| call!(alpha, keys.revoke_key(proto::RevokeKeyRequest { id }))
    );
    let still = accepted(&betas).await;
    assert!(
        still.is_ok(),
        "LEAK: alpha's RevokeKey revoked beta's key: {still:?}"
    );
}

// ---------------------------------------------------------------------------
// AuditService

pub async fn list_audit_entries(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    macro_rules! entries {
        ($who:expr, $filter:expr) => {
            all_pages!($who, audit.list_audit_entries($filter), entries)
                .unwrap_or_else(|e| panic!("{} lists audit entries: {e:?}", $who.label))
        };
    }
    let alpha_keys = [alpha.id.as_str(), w.alpha2.id.as_str()];
    let b: Vec<proto::AuditEntry> = entries!(beta, proto::ListAuditEntriesRequest::default());
    let leaked: Vec<&proto::AuditEntry> = b
        .iter()
        .filter(|e| e.namespace != "beta" || alpha_keys.contains(&e.key_id.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListAuditEntries shows beta alpha's entries {leaked:#?}"
    );
    for e in &b {
        assert!(
            !e.object.starts_with("beta/") && !e.object.starts_with("alpha/"),
            "the audit log names an object qualified: {e:?}"
        );
    }
    assert!(
        b.iter()
            .any(|e| e.action == "queue.create" && e.object == "emails" && e.outcome == "OK"),
        "beta's creation of its emails, named bare: {b:#?}"
    );
    let a: Vec<proto::AuditEntry> = entries!(alpha, proto::ListAuditEntriesRequest::default());
    let leaked: Vec<&proto::AuditEntry> = a
        .iter()
        .filter(|e| e.namespace != "alpha" || e.key_id == beta.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListAuditEntries shows alpha beta's entries (its attempts on alpha's objects included) {leaked:#?}"
    );
    // By alpha's job as the object: only beta's own refused attempts on it.
    let of_alphas: Vec<proto::AuditEntry> = entries!(
        beta,
        proto::ListAuditEntriesRequest {
            object: w.a.done.clone(),
            ..Default::default()
        }
    );
    let leaked: Vec<&proto::AuditEntry> = of_alphas
        .iter()
        .filter(|e| e.key_id != beta.id || e.outcome == "OK")
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: beta's audit log of alpha's job shows more than beta's own refused attempts: {leaked:#?}"
    );
    let by_alpha: Vec<proto::AuditEntry> = entries!(
        beta,
        proto::ListAuditEntriesRequest {
            key_id: alpha.id.clone(),
            ..Default::default()
        }
    );
    assert!(
        by_alpha.is_empty(),
        "LEAK: beta's audit log by alpha's key: {by_alpha:#?}"
    );
    let token = call!(
        alpha,
        audit.list_audit_entries(proto::ListAuditEntriesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one entry");
    if let Ok(page) = call!(
        beta,
        audit.list_audit_entries(proto::ListAuditEntriesRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked: Vec<&proto::AuditEntry> = page
            .entries
            .iter()
            .filter(|e| e.namespace != "beta" || alpha_keys.contains(&e.key_id.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's entries {leaked:#?}"
        );
    }
}
