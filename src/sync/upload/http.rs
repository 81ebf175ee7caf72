//! The HTTP transport object_store's S3 client sends through: reqwest (rustls), with every
//! request body cut into chunks paced by the shared [`Limiter`], so the bandwidth cap holds
//! smoothly on the wire instead of as bursts of whole parts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};

use super::limiter::{chunk_size, Limiter};

/// Builds the paced client for one target.
#[derive(Debug)]
pub struct PacedConnector {
    pub limiter: Arc<Limiter>,
    pub allow_http: bool,
    /// Whole-request timeout (a part at the capped rate must fit in it).
    pub timeout: Duration,
}

/// The reqwest client of one target: rustls (ring), https only unless `allow_http`, a
/// whole-request `timeout`.
pub fn client(allow_http: bool, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // rustls without a bundled provider: use ring (idempotent; another user such as the
    // MQTT client may have installed it already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .https_only(!allow_http)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

impl HttpConnector for PacedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client =
            client(self.allow_http, self.timeout).map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(Paced {
            client,
            limiter: self.limiter.clone(),
        }))
    }
}

#[derive(Debug)]
struct Paced {
    client: reqwest::Client,
    limiter: Arc<Limiter>,
}

fn kind_of(e: &reqwest::Error) -> HttpErrorKind {
    if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Request
    }
}

#[async_trait::async_trait]
impl HttpService for Paced {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let data: Bytes = body
            .collect()
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?
            .to_bytes();
        let url: reqwest::Url = parts
            .uri
            .to_string()
            .parse()
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut rq = reqwest::Request::new(parts.method, url);
        *rq.headers_mut() = parts.headers;
        if !data.is_empty() {
            rq.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(data.len() as u64),
            );
            *rq.body_mut() = Some(match self.limiter.rate() {
                None => reqwest::Body::from(data),
                Some(rate) => {
                    let step = chunk_size(rate);
                    let limiter = self.limiter.clone();
                    let chunks: Vec<Bytes> = (0..data.len())
                        .step_by(step)
                        .map(|i| data.slice(i..(i + step).min(data.len())))
                        .collect();
                    let stream = futures::stream::iter(chunks).then(move |c| {
                        let limiter = limiter.clone();
                        async move {
                            limiter.acquire(c.len()).await;
                            Ok::<Bytes, std::io::Error>(c)
                        }
                    });
                    reqwest::Body::wrap_stream(stream)
                }
            });
        }
        let r = self
            .client
            .execute(rq)
            .await
            .map_err(|e| HttpError::new(kind_of(&e), e.without_url()))?;
        let res: http::Response<reqwest::Body> = r.into();
        let (parts, body) = res.into_parts();
        let body = HttpResponseBody::new(body.map_err(|e| HttpError::new(kind_of(&e), e)));
        Ok(HttpResponse::from_parts(parts, body))
    }
}
