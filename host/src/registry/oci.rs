//! An OCI distribution registry (Docker's `registry`, ghcr.io, Harbor, zot…) through
//! `oci-client`. Plugins live under one namespace: `oci://127.0.0.1:5000/flow-channels` keeps
//! the `sms` plugin in the repository `flow-channels/sms`. Loopback registries are spoken to
//! over plain HTTP, every other one over HTTPS (`oci+http://` forces HTTP). Credentials, when
//! the registry needs them, come from `OCI_REGISTRY_USERNAME` / `OCI_REGISTRY_PASSWORD`.

use anyhow::{Context, Result, bail};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// The manifest media type of every artifact we push.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct OciBackend {
    client: Client,
    /// `host[:port]`.
    registry: String,
    /// Path prefix of the repositories (may be empty).
    namespace: String,
    http: bool,
    auth: RegistryAuth,
}

impl OciBackend {
    /// From `oci://host[:port][/namespace]` or `oci+http://…`.
    pub fn open(location: &str) -> Result<OciBackend> {
        let (rest, force_http) = if let Some(rest) = location.strip_prefix("oci+http://") {
            (rest, true)
        } else if let Some(rest) = location.strip_prefix("oci://") {
            (rest, false)
        } else {
            bail!("{location:?} is not oci://host[:port]/namespace");
        };
        let (registry, namespace) = rest.split_once('/').unwrap_or((rest, ""));
        if registry.is_empty() {
            bail!("{location:?} names no registry host");
        }
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let http = force_http || matches!(host, "127.0.0.1" | "localhost" | "[::1]");
        let config = oci_client::client::ClientConfig {
            protocol: if http {
                oci_client::client::ClientProtocol::Http
            } else {
                oci_client::client::ClientProtocol::Https
            },
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let auth = match (
            std::env::var("OCI_REGISTRY_USERNAME"),
            std::env::var("OCI_REGISTRY_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        Ok(OciBackend {
            client: Client::new(config),
            registry: registry.to_string(),
            namespace: namespace.trim_matches('/').to_string(),
            http,
            auth,
        })
    }

    fn repository(&self, repo: &str) -> String {
        if self.namespace.is_empty() {
            repo.to_string()
        } else {
            format!("{}/{repo}", self.namespace)
        }
    }

    fn reference(&self, repo: &str, reference: &str) -> Reference {
        let repository = self.repository(repo);
        if reference.starts_with("sha256:") {
            Reference::with_digest(self.registry.clone(), repository, reference.to_string())
        } else {
            Reference::with_tag(self.registry.clone(), repository, reference.to_string())
        }
    }

    fn context(&self, what: &str) -> String {
        format!("{what} at {}", self.registry)
    }
}

/// Whether an error means "there is no such manifest / repository".
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// Repositories per catalog request (registries cap `n`, Docker's at 1,000).
const CATALOG_PAGE: usize = 1000;

impl OciBackend {
    /// One page of `GET /v2/_catalog`, after `last`.
    async fn catalog_page(&self, last: Option<&str>) -> Result<Vec<String>> {
        let scheme = if self.http { "http" } else { "https" };
        let url = format!("{scheme}://{}/v2/_catalog", self.registry);
        let mut query = vec![("n", CATALOG_PAGE.to_string())];
        if let Some(last) = last {
            query.push(("last", last.to_string()));
        }
        let mut request = reqwest::Client::new().get(&url).query(&query);
        if let RegistryAuth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let body: serde_json::Value = request.send().await?.error_for_status()?.json().await?;
        Ok(body["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect())
    }
}

impl OciBackend {
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let prefix = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}/", self.namespace)
        };
        let mut names = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .catalog_page(last.as_deref())
                .await
                .with_context(|| self.context("listing the repositories"))?;
            let full = page.len() == CATALOG_PAGE;
            last = page.last().cloned();
            names.extend(
                page.iter()
                    .filter_map(|r| r.strip_prefix(&prefix))
                    .filter(|r| !r.contains('/'))
                    .map(str::to_string),
            );
            if !full {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let reference = self.reference(repo, "latest");
        match self
            .client
            .list_tags(&reference, &self.auth, None, None)
            .await
        {
            Ok(response) => Ok(response.tags),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| self.context(&format!("listing the tags of {repo}"))),
        }
    }

    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Vec<u8>>> {
        let r = self.reference(repo, reference);
        match self
            .client
            .pull_manifest_raw(&r, &self.auth, &[MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| self.context(&format!("fetching {repo}:{reference}"))),
        }
    }

    pub async fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let r = self.reference(repo, digest);
        let mut out = Vec::new();
        self.client
            .pull_blob(&r, digest, &mut out)
            .await
            .with_context(|| self.context(&format!("fetching the blob {digest} of {repo}")))?;
        Ok(out)
    }

    pub async fn put_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        let r = self.reference(repo, digest);
        self.client
            .push_blob(&r, bytes, digest)
            .await
            .with_context(|| self.context(&format!("pushing the blob {digest} to {repo}")))?;
        Ok(())
    }

    pub async fn put_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
        let r = self.reference(repo, tag);
        let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client
            .push_manifest_raw(&r, bytes.to_vec(), content_type)
            .await
            .with_context(|| self.context(&format!("pushing {repo}:{tag}")))?;
        Ok(())
    }
}
