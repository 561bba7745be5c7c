//! One tower layer for every check that lets a call in or refuses it before its
//! handler runs: who is calling ([`crate::auth::layer::Gate`]) and whether this
//! process can take one more call ([`crate::overload::Limits`]). A refusal is
//! answered at once with its status; a call let in holds its pass (a permit, say)
//! until it has been answered.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

/// A check in front of every service.
pub trait Admit: Send + Sync + 'static {
    /// What a call let in holds while it runs.
    type Pass: Send + 'static;

    /// Lets `request` in (it may add to its extensions), or refuses it.
    fn admit<B: Send>(
        &self,
        request: &mut http::Request<B>,
    ) -> impl Future<Output = Result<Self::Pass, Status>> + Send;
}

/// Puts an [`Admit`] in front of a service.
pub struct AdmitLayer<A> {
    admit: Arc<A>,
}

impl<A> AdmitLayer<A> {
    pub fn new(admit: A) -> AdmitLayer<A> {
        AdmitLayer {
            admit: Arc::new(admit),
        }
    }
}

impl<A> Clone for AdmitLayer<A> {
    fn clone(&self) -> Self {
        AdmitLayer {
            admit: self.admit.clone(),
        }
    }
}

impl<S, A> tower::Layer<S> for AdmitLayer<A> {
    type Service = Admitted<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            admit: self.admit.clone(),
        }
    }
}

pub struct Admitted<S, A> {
    inner: S,
    admit: Arc<A>,
}

impl<S: Clone, A> Clone for Admitted<S, A> {
    fn clone(&self) -> Self {
        Admitted {
            inner: self.inner.clone(),
            admit: self.admit.clone(),
        }
    }
}

impl<S, A, B> tower::Service<http::Request<B>> for Admitted<S, A>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    A: Admit,
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
        let admit = self.admit.clone();
        Box::pin(async move {
            match admit.admit(&mut request).await {
                Ok(pass) => {
                    // A call with an actor (the key gate names one) is handled as
                    // that actor's, for the audit log.
                    let actor = request
                        .extensions()
                        .get::<Arc<crate::audit::Actor>>()
                        .cloned();
                    let answered = match actor {
                        Some(actor) => crate::audit::acting(actor, inner.call(request)).await,
                        None => inner.call(request).await,
                    };
                    drop(pass);
                    answered
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
