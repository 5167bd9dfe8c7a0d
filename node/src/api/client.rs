//! The CLI's side of the local API: find the running daemon through the data dir, call it
//! with the admin token, and turn its answers (or its absence) into clear errors.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::ApiEndpoint;
use super::views::ErrorView;
use crate::data_dir::DataDir;

/// A connection to one node's daemon.
pub struct ApiClient {
    base: String,
    token: Zeroizing<String>,
    agent: ureq::Agent,
    data_dir: PathBuf,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Finds the daemon of `dir` from the files it writes there.
    pub fn connect(dir: &DataDir) -> anyhow::Result<ApiClient> {
        dir.check_usable()?;
        let not_running = || {
            format!(
                "no porchlight daemon is running for data dir {}; start one with `porchlight node --data-dir {}`",
                dir.root().display(),
                dir.root().display()
            )
        };
        let endpoint_text = fs::read_to_string(dir.api_address()).with_context(not_running)?;
        let endpoint: ApiEndpoint = serde_json::from_str(&endpoint_text).with_context(|| {
            format!(
                "{} is corrupt; restart the daemon",
                dir.api_address().display()
            )
        })?;
        let token = Zeroizing::new(
            fs::read_to_string(dir.api_token())
                .with_context(not_running)?
                .trim()
                .to_owned(),
        );
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout_read(Duration::from_secs(600))
            .build();
        Ok(ApiClient {
            base: format!("http://{}", endpoint.address),
            token,
            agent,
            data_dir: dir.root().to_owned(),
        })
    }

    fn call(
        &self,
        request: ureq::Request,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<ureq::Response> {
        let request = request.set("Authorization", &format!("Bearer {}", self.token.as_str()));
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match result {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(code, response)) => {
                let message = response
                    .into_json::<ErrorView>()
                    .map(|view| view.error)
                    .unwrap_or_else(|_| format!("the daemon answered HTTP {code}"));
                bail!("{message}")
            }
            Err(ureq::Error::Transport(err)) => bail!(
                "no porchlight daemon is answering at {} for data dir {} ({err}); start one with `porchlight node --data-dir {}`",
                self.base,
                self.data_dir.display(),
                self.data_dir.display()
            ),
        }
    }

    /// `GET path` and decode the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.call(self.agent.get(&format!("{}{path}", self.base)), None)?;
        response
            .into_json()
            .context("the daemon's answer is not the expected JSON")
    }

    /// `POST path` with a JSON body and decode the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body).context("cannot encode the request")?;
        let response = self.call(self.agent.post(&format!("{}{path}", self.base)), Some(body))?;
        response
            .into_json()
            .context("the daemon's answer is not the expected JSON")
    }

    /// `GET path` into the file `dest`: written to a temporary file beside it and renamed
    /// into place only when the whole body arrived, so a failed export leaves nothing.
    pub fn download(&self, path: &str, dest: &Path) -> anyhow::Result<u64> {
        let response = self.call(self.agent.get(&format!("{}{path}", self.base)), None)?;
        let expected: Option<u64> = response
            .header("Content-Length")
            .and_then(|v| v.parse().ok());
        let file_name = dest
            .file_name()
            .with_context(|| format!("{} is not a file path", dest.display()))?;
        let tmp = dest.with_file_name(format!(".{}.partial", file_name.to_string_lossy()));
        let result = (|| -> anyhow::Result<u64> {
            let mut file = fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let copied = io::copy(&mut response.into_reader(), &mut file)
                .context("the export was cut off; nothing was written")?;
            if expected.is_some_and(|len| len != copied) {
                bail!("the export was cut off after {copied} bytes; nothing was written");
            }
            file.flush()?;
            file.sync_all()
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            fs::rename(&tmp, dest).with_context(|| format!("cannot write {}", dest.display()))?;
            Ok(copied)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}
